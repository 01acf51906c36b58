"""The request fingerprint: everything that decides what a sample's video looks like, as a flat dict.

A re-run skips a finished sample only when the fingerprint recorded in its ``generation.json`` equals the
fingerprint of the request now; anything else would hand back a video made for another request (another
prompt, seed, clip or model) as if it answered this one. Resolved values are recorded, not flags (the
model's default ``top_p``, whether the diffusion decoder actually runs), so that "the same request" means
"the same video", not "the same command line".

Adding an option that changes the output (``crf``, ``num_frames``, ``quantization``, ...) is one line in
:func:`request_fingerprint`. Options that only change speed or memory (batch size, placements, compile,
device count) stay out, so a re-run with another ``--batch-size`` still resumes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

RECORD_KEY = "request"
"""Where the fingerprint lives in ``generation.json``."""

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (the input's identity: a replaced clip with the same name is another input)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(path: Path) -> dict[str, Any] | None:
    """Cheap identity of a weights file: name, size and modification time (hashing 10+ GB is not cheap)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return {"file": Path(path).name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def request_fingerprint(
    config,
    sample,
    *,
    input_sha256: str,
    input_kind: str,
    top_p: float,
    temperature: float,
    decoder: str,
    weights: dict[str, Any] | None,
) -> dict[str, Any]:
    """What was asked for, resolved: ``config`` is the :class:`PipelineConfig`, ``sample`` the :class:`Sample`
    (as the user gave it: before an image forces one context frame)."""
    return {
        "input_sha256": input_sha256,
        "prompt": sample.prompt,
        "seed": sample.seed,
        "top_p": top_p,
        "temperature": temperature,
        "decoding": config.decoding,
        "scd_window": config.scd_window if config.decoding != "sequential" else None,
        "model": config.ar_model_dir,
        "weights": weights,
        "load_format": "dummy" if config.load_format == "dummy" else "checkpoint",
        "text_encoder_dtype": config.text_encoder_dtype,
        "decoder": decoder,
        "dd_seed": None if decoder == "dv_tokenizer" else (sample.seed if config.dd_seed is None else config.dd_seed),
        "guardrail": config.guardrail,
        "num_input_frames": 1 if input_kind == "image" else sample.num_input_frames,
        "fps": config.fps,
        "pad": config.pad,
        "num_frames": sample.num_frames,
        "quantization": config.quantization,
    }


def difference(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """None if ``recorded`` answers ``wanted``; else a short phrase naming what differs (for one error line)."""
    if not isinstance(recorded, dict):
        return "it has no request record (written by an older cosmos-cli)"
    changed = [key for key in wanted if recorded.get(key, _MISSING) != wanted[key]]
    changed += [key for key in recorded if key not in wanted]
    if not changed:
        return None
    shown = []
    for key in changed[:3]:
        if key == "input_sha256":
            shown.append("input file content")
        elif key in ("prompt", "weights") or key not in wanted or key not in recorded:
            shown.append(key)
        else:
            shown.append(f"{key} {recorded[key]!r} -> {wanted[key]!r}")
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return ", ".join(shown) + more


_MISSING = object()
