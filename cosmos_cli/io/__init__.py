"""Pixels on disk: reading clips and images as model input, writing videos, atomic output files."""
