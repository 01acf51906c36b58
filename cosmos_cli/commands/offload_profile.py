"""`cosmos-cli offload-profile` (not built yet)."""

from __future__ import annotations

from cosmos_cli.commands.stub import not_built


def command() -> None:
    """Not built yet."""
    not_built("offload-profile")
