"""The package's layout rules that a reviewer cannot see in one file: production code never imports the tiny
test checkpoints (``cosmos_cli.tiny``) or the test suite, and reads the environment only in ``settings.py``.

``cosmos_cli/tiny/`` writes tiny checkpoints for tests, scripts and the demo; it builds on production code
(the stand-in files of ``cosmos_cli/stages/standin_files/``), never the reverse. Imports inside functions
count as much as top-level ones: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cosmos_cli"
FIXTURES = PACKAGE / "tiny"
FORBIDDEN = ("cosmos_cli.tiny", "tests")
"""Modules production code must not import (the names and everything below them)."""


def _production_files() -> list[Path]:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if FIXTURES not in p.parents]
    assert len(files) > 50, f"found only {len(files)} modules under {PACKAGE}"
    return files


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The absolute module names an ``import`` / ``from ... import`` node reaches (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    # ``from cosmos_cli import tiny`` reaches cosmos_cli.tiny: the imported names may be modules.
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


def violations_in(source: str, module: str, is_package: bool, label: str) -> list[str]:
    """``label:line imports NAME`` for every import, at any depth, of a forbidden module."""
    found = []
    for node in ast.walk(ast.parse(source, filename=label)):
        for name in _imported(node, module, is_package):
            if _forbidden(name):
                found.append((node.lineno, f"{label}:{node.lineno} imports {name}"))
                break
    return [text for _, text in sorted(found)]


def test_production_code_imports_no_test_fixtures():
    violations = []
    for path in _production_files():
        label = str(path.relative_to(PACKAGE.parent))
        violations += violations_in(path.read_text(), _module_name(path), path.name == "__init__.py", label)
    assert not violations, (
        "production modules import test fixtures (move what they need into production code, e.g. "
        "cosmos_cli/stages/standin_files/):\n" + "\n".join(violations)
    )


def test_the_import_check_sees_lazy_relative_and_from_imports():
    """The checker itself: each spelling of a forbidden import is caught, with its line; allowed ones pass."""
    source = (
        "import cosmos_cli.models\n"
        "from cosmos_cli.models.ar import tiny\n"  # a production module that happens to be called tiny
        "def f():\n"
        "    from cosmos_cli.tiny.guardrail import TINY\n"
        "from cosmos_cli import tiny\n"
        "from .. import tiny as t\n"
        "import tests.golden_sets\n"
        "from tests import conftest\n"
        "from .tiny_helpers import x\n"  # cosmos_cli.stages.tiny_helpers: allowed
    )
    found = violations_in(source, "cosmos_cli.stages.probe", False, "probe.py")
    assert found == [
        "probe.py:4 imports cosmos_cli.tiny.guardrail",
        "probe.py:5 imports cosmos_cli.tiny",
        "probe.py:6 imports cosmos_cli.tiny",
        "probe.py:7 imports tests.golden_sets",
        "probe.py:8 imports tests",
    ], found


def environment_reads(source: str, label: str) -> list[str]:
    """``label:line`` for every read of the environment: ``os.environ`` used other than as the target of
    ``os.environ[NAME] = ...`` or ``os.environ.setdefault(...)`` (writes, for child processes), ``os.getenv``,
    ``os.environb``, ``from os import environ / getenv``."""
    tree = ast.parse(source, filename=label)
    allowed: set[int] = set()  # ids of the os.environ nodes that are written through
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            allowed.add(id(node.value))
        elif isinstance(node, ast.Attribute) and node.attr == "setdefault":
            allowed.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("getenv", "environb") or (node.attr == "environ" and id(node) not in allowed):
                found.append((node.lineno, f"{label}:{node.lineno} reads os.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ("environ", "getenv", "environb"):
                    found.append((node.lineno, f"{label}:{node.lineno} imports os.{alias.name}"))
    return [text for _, text in sorted(found)]


def test_only_settings_reads_the_environment():
    reads = []
    for path in _production_files():
        if path != PACKAGE / "settings.py":
            reads += environment_reads(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not reads, (
        "environment variables are read only in cosmos_cli/settings.py (add a function there and a row to "
        "docs/settings.md):\n" + "\n".join(reads)
    )


def test_the_environment_check_tells_reads_from_writes():
    source = (
        "import os\n"
        "os.environ['A'] = '1'\n"
        "os.environ.setdefault('B', '2')\n"
        "x = os.environ.get('C')\n"
        "y = os.environ['D']\n"
        "z = 'E' in os.environ\n"
        "w = os.getenv('F')\n"
        "env = dict(os.environ)\n"
        "from os import environ\n"
    )
    assert environment_reads(source, "m.py") == [f"m.py:{n} " + what for n, what in [
        (4, "reads os.environ"), (5, "reads os.environ"), (6, "reads os.environ"), (7, "reads os.getenv"),
        (8, "reads os.environ"), (9, "imports os.environ"),
    ]]  # fmt: skip
