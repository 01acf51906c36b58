"""cosmos-cli: run NVIDIA Cosmos-1.0 autoregressive world models."""

__version__ = "0.1.0"
