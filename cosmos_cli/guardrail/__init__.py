"""NVIDIA's Cosmos-1.0 guardrails, rebuilt: a keyword blocklist and the Aegis LLM on the prompt, a SigLIP
video content classifier and RetinaFace face pixelation on the generated frames.

This package holds the checks themselves; ``cosmos_cli.stages.guardrail`` wraps them as pipeline stages.
Importing it stays cheap (no torch, no transformers) so that ``generate`` can call
:func:`check_guardrail_available` before anything heavy is loaded.
"""

from cosmos_cli.guardrail.availability import (
    GUARDRAIL_MODES,
    GUARDRAIL_OFF_WARNING,
    check_guardrail_available,
)

__all__ = ["GUARDRAIL_MODES", "GUARDRAIL_OFF_WARNING", "check_guardrail_available"]
