"""Orchestration: stages with load / run / offload, and the recipe that chains them."""
