"""The CLI's shape: verbs listed, version, not-built verbs fail loudly, errors are one line."""

from __future__ import annotations

import subprocess
import sys

from cosmos_cli import __version__
from cosmos_cli.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmos_cli", *args], capture_output=True, text=True)


def test_help_lists_every_verb():
    out = run_cli("--help")
    assert out.returncode == 0
    for verb in ("download", "extract-frames", "generate", "offload-profile", "doctor", "serve"):
        assert verb in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_doctor_reports_a_table(tmp_path):
    out = run_cli("doctor", "--checkpoint-dir", str(tmp_path))
    assert out.returncode == 2  # an empty folder: generate could not run (tests/test_doctor.py)
    assert "torch" in out.stdout and "ffmpeg" in out.stdout and "AR model" in out.stdout


def test_unknown_option_is_a_usage_error():
    assert main(["doctor", "--no-such-flag"]) == 2


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys):
    from cosmos_cli.commands import doctor

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(doctor, "collect", boom)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: disk on fire" in err and "--debug" in err and "Traceback" not in err
    import pytest

    with pytest.raises(RuntimeError):
        main(["--debug", "doctor"])
