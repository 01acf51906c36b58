"""Placeholder for subcommands that are not built yet: exit 2 with one line, never a fake success."""

from __future__ import annotations

from cosmos_cli.errors import NotBuiltYet


def not_built(name: str) -> None:
    raise NotBuiltYet(f"`cosmos-cli {name}` is not built yet in this version", "see README.md for what works")
