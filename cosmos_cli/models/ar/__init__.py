"""The Cosmos-1.0 autoregressive transformer (4B/5B/12B/13B and any golden/tiny shape)."""

from cosmos_cli.models.ar.transformer import Transformer

__all__ = ["Transformer"]
