"""Tiny checkpoints in the real file formats and folder names, written locally for tests and demos."""
