"""Inductor's cache defaults to the checkpoint folder; a user's TORCHINDUCTOR_CACHE_DIR wins."""

from __future__ import annotations

from cosmos_cli.compile_cache import ENV, FOLDER, use_cache_next_to


def test_cache_goes_next_to_the_checkpoints_unless_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert use_cache_next_to(tmp_path / "ck") == tmp_path / "ck" / FOLDER
    import os

    assert os.environ[ENV] == str(tmp_path / "ck" / FOLDER) and (tmp_path / "ck" / FOLDER).is_dir()
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert use_cache_next_to(tmp_path / "other") == tmp_path / "mine"
    assert not (tmp_path / "other").exists()


def test_unwritable_checkpoints_keep_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert use_cache_next_to(blocker) is None
    import os

    assert ENV not in os.environ
