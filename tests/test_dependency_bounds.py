"""The lower bounds in pyproject.toml hold: a resolver run at the lowest direct versions picks exactly them.

A bound that cannot hold (``torch>=2.4`` while megatron-core needs 2.6, ``transformers>=4.56`` while 4.x caps
huggingface_hub below 1.0) makes the resolver choose a higher version than the one we declare, so the declared
bound is a lie. ``uv pip compile --resolution lowest-direct`` resolves every direct requirement (all extras) to its
lowest allowed version without installing anything (about 10 s against PyPI). Skipped with a reason when uv is not
installed or the index cannot be reached.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/simple"

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")


def _uv() -> list[str]:
    exe = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(exe).exists():
        pytest.skip("uv is not installed (pip install uv, or the dev extra)")
    return [exe]


def _index_reachable() -> None:
    try:
        urllib.request.urlopen(f"{INDEX}/uv/", timeout=10).close()
    except OSError as err:
        pytest.skip(f"{INDEX} is not reachable ({err}); the bounds check needs the package index")


def _lower_bounds() -> dict[str, Version]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    self_name = canonicalize_name(project["name"])
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    bounds: dict[str, Version] = {}
    for line in reqs:
        req = Requirement(line)
        if canonicalize_name(req.name) == self_name:
            continue
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
        assert lows, f"{line!r} has no lower bound"
        bounds[canonicalize_name(req.name)] = max(lows)
    return bounds


def test_lowest_direct_resolution_picks_the_declared_bounds(tmp_path):
    uv = _uv()
    _index_reachable()
    cmd = [*uv, "pip", "compile", str(REPO / "pyproject.toml"), "--all-extras", "--resolution", "lowest-direct"]
    cmd += ["--python-version", "3.10", "--index-url", INDEX, "--no-header", "--no-annotate", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, f"the declared bounds do not resolve together:\n{run.stderr[-3000:]}"
    resolved: dict[str, Version] = {}
    for line in run.stdout.splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            resolved[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    wrong = {
        name: (str(low), str(resolved.get(name)))
        for name, low in _lower_bounds().items()
        if resolved.get(name) != low
    }
    assert not wrong, f"declared lower bound -> what the resolver must pick instead: {wrong}"
