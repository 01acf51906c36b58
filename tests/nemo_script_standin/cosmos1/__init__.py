"""Stand-in for NVIDIA's ``cosmos1`` package (tests only): importable only with the repo root on sys.path."""
