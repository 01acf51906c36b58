"""Videos longer than 33 frames (``--num-frames N``): continue from the last frames generated, chunk by chunk.

The AR model is trained on 33-frame clips (5 latent frames); positions past them are outside its training.
So a longer video is built the way users already do it by hand (NVIDIA/Cosmos#61): take the last
:data:`CONTEXT_FRAMES` frames of what has been generated (the decoded pixels), tokenize them with the DV
tokenizer as a new 9-frame input, and generate the next :data:`NEW_FRAMES` frames with the same prompt.
The first chunk is today's 33-frame run (same seed, same frames); every further chunk adds 24, so
N = 33 + 24k for a video or an image input alike. The chunk's first 9 decoded frames re-render its
context and are dropped: the joined video never repeats a boundary frame.

The samples of one group run their chunks in passes: a pass runs the next chunk of every sample that still
has one, through the pipeline's own tokenize / AR / decode stages (so AR batching, offloading, tensor
parallelism and the decoder choice are exactly those of the first chunk); a finished sample drops out. The
prompt's guardrail decision and T5 embedding are those of the first chunk; the video guardrail and face
blur run once, on the joined video, after the last pass. After every chunk the sample's frames so far are
saved (:mod:`cosmos_cli.pipeline.chunk_state`), so an interrupted sample resumes at its last finished
chunk. Method, measurements and limits: ``docs/long-videos.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cosmos_cli.console import info, warn
from cosmos_cli.errors import BadInput

if TYPE_CHECKING:  # the CLI checks --num-frames before torch is imported
    import torch

CHUNK_FRAMES = 33
"""Frames of one AR run (the model's training length): the first chunk gives all of them."""
CONTEXT_FRAMES = 9
"""Frames fed back as the next chunk's input (NVIDIA's 9-frame Video2World context)."""
NEW_FRAMES = CHUNK_FRAMES - CONTEXT_FRAMES
"""Frames each further chunk adds (24: 3 latent frames)."""
MAX_CHUNKS = 11
MAX_NUM_FRAMES = CHUNK_FRAMES + NEW_FRAMES * (MAX_CHUNKS - 1)
"""273 frames (~11 s at 25 fps). Users report drift and repetition well before that; the cap also bounds
the frames held in host memory (~0.5 GB per sample at 1024x640)."""


def check_num_frames(num_frames: object, where: str = "--num-frames") -> int:
    """``num_frames`` as an int if it is 33 + 24k and at most :data:`MAX_NUM_FRAMES`, else :class:`BadInput`."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        try:
            as_float = float(num_frames)  # JSON 81.0, form field "81"
        except (TypeError, ValueError):
            raise BadInput(f"{where} must be an integer, got {num_frames!r}", "use 33, 57, 81, ...") from None
        if not as_float.is_integer():
            raise BadInput(f"{where} must be an integer, got {num_frames!r}", "use 33, 57, 81, ...")
        num_frames = int(as_float)
    if num_frames > MAX_NUM_FRAMES:
        raise BadInput(
            f"{where} {num_frames} is above the cap of {MAX_NUM_FRAMES} frames ({MAX_CHUNKS} chunks)",
            f"use at most {MAX_NUM_FRAMES}; longer continuations drift (docs/long-videos.md)",
        )
    if num_frames < CHUNK_FRAMES or (num_frames - CHUNK_FRAMES) % NEW_FRAMES:
        below = max(CHUNK_FRAMES, CHUNK_FRAMES + (num_frames - CHUNK_FRAMES) // NEW_FRAMES * NEW_FRAMES)
        nearest = sorted({below, min(below + NEW_FRAMES, MAX_NUM_FRAMES)})
        raise BadInput(
            f"{where} must be 33 + 24k (33, 57, 81, ..., {MAX_NUM_FRAMES}), got {num_frames}",
            f"each chunk after the first adds 24 frames; use {' or '.join(map(str, nearest))}",
        )
    return num_frames


def num_chunks(num_frames: int) -> int:
    return 1 + (num_frames - CHUNK_FRAMES) // NEW_FRAMES


def chunk_seed(seed: int, index: int) -> int:
    """The sampling seed of chunk ``index``: the sample's own seed for the first chunk (so its frames are
    the 33-frame run's), then a hash of (seed, index). It depends on nothing else, so a chunk's tokens do
    not depend on the samples that share its batch (the AR noise is counter-based per sample)."""
    if index == 0:
        return int(seed)
    digest = hashlib.sha256(f"cosmos-cli long video: seed {int(seed)} chunk {index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # [0, 2**63)


def frames_sha256(frames: np.ndarray) -> str:
    """Hash of uint8 frames exactly as they go to the mp4 encoder (lossy H.264 hides small differences)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    return hashlib.sha256(repr(frames.shape).encode() + frames.tobytes()).hexdigest()


# ---- what feeds the next chunk ---------------------------------------------------------------------
def context_from_pixels(stage, frames: np.ndarray) -> torch.Tensor:
    """The default route: the last 9 output frames, padded to 33 by repeating the last one (as any input
    is), re-encoded with the DV tokenizer -> the next chunk's token grid; its first 2 latent frames are
    the context."""
    from cosmos_cli.pipeline.pipeline import _to_model_video

    return stage.encode(_to_model_video(frames[-CONTEXT_FRAMES:], CHUNK_FRAMES)).cpu()


def context_from_latents(tokens: torch.Tensor, context_latents: int = 2) -> torch.Tensor:
    """The alternative, measured in ``docs/long-videos.md`` and not used: the chunk's own last 2 latent
    frames (frames 17-24 and 25-32) as the next context, with no decode and re-encode in between."""
    return tokens[..., -context_latents:, :, :]


# ---- the chunk loop --------------------------------------------------------------------------------
class LongVideos:
    """The chunks after the first for one group of samples of :meth:`VideoPipeline._run_chunk`."""

    STAGES = ("tokenize", "ar_model", "diffusion_decoder", "decode_video")
    """The per-chunk stages whose seconds each chunk record keeps (and the totals add up)."""

    def __init__(self, pipeline, output_dir: Path, results: dict, on_event, *, restart: bool = False):
        from cosmos_cli.pipeline.chunk_state import ChunkStore

        self.pipeline = pipeline
        self.output_dir = Path(output_dir)
        self.results = results
        self.on_event = on_event
        self.restart = restart
        self.store = ChunkStore
        self._saved: dict[str, object] = {}
        self._fingerprints: dict[str, dict] = {}

    # -- resume ------------------------------------------------------------------------------------
    def without_saved_chunks(self, live: list) -> list:
        """The samples that need their first chunk generated; the others resume from their saved chunks."""
        fresh = []
        for sample in live:
            saved = None
            if num_chunks(sample.num_frames) > 1:
                store = self._store(sample)
                if self.restart:
                    store.clear()
                else:
                    saved = store.load(self._fingerprint(sample), limit=num_chunks(sample.num_frames))
            if saved is None:
                if num_chunks(sample.num_frames) > 1:
                    total = num_chunks(sample.num_frames)
                    info(f"[bold]chunk 1/{total}[/bold] of {sample.name}: frames 0-{CHUNK_FRAMES - 1} from the input")
                fresh.append(sample)
                continue
            self._saved[sample.name] = saved
            info(f"{sample.name}: resuming after chunk {len(saved.records)}/{num_chunks(sample.num_frames)}")
        return fresh

    def _store(self, sample):
        return self.store(sample.folder(self.output_dir))

    def _fingerprint(self, sample) -> dict:
        """What the saved frames depend on: a saved chunk is reused only for the very same request."""
        if sample.name not in self._fingerprints:
            from dataclasses import asdict

            from cosmos_cli import __version__

            p, cfg = self.pipeline, self.pipeline.config
            self._fingerprints[sample.name] = {
                "input_sha256": _file_sha256(Path(sample.visual_input)),
                "prompt": sample.prompt,
                "seed": sample.seed,
                "num_input_frames": sample.num_input_frames,
                "sampling": asdict(p._sampling(sample)),
                "model": p.args.name,
                "ar_model_dir": cfg.ar_model_dir,
                "load_format": cfg.load_format,
                "decoder": "diffusion_decoder" if p.diffusion_decoder is not None else "dv_tokenizer",
                "dd_seed": cfg.dd_seed,
                "pad": cfg.pad,
                "decoding": cfg.decoding,
                "scd_window": cfg.scd_window,
                "device": p.device.type,
                "dtype": str(p.dtype),
                "cosmos_cli": __version__,
            }
        return self._fingerprints[sample.name]

    # -- the passes ----------------------------------------------------------------------------------
    def extend(self, live: list, videos: dict, tokens: dict, contexts: dict, should_stop) -> dict[str, np.ndarray]:
        """Every sample's whole video (pre-guardrail uint8 frames): ``videos`` (and their AR ``tokens``) hold
        the first chunk of the fresh samples; saved chunks are taken up where they ended; further chunks are
        generated here."""
        frames: dict[str, np.ndarray] = {}
        todo = []
        for sample in live:
            result = self.results[sample.name]
            saved = self._saved.get(sample.name)
            if saved is not None:
                frames[sample.name] = saved.frames
                result.chunks = [dict(r, resumed=True) for r in saved.records]
                result.decoder = result.decoder or saved.records[0].get("decoder")
                if not result.decoding:
                    result.decoding = saved.records[0].get("decoding", {})
            elif sample.name in videos:
                frames[sample.name] = videos[sample.name]
                first = self._record(sample, 0, result, frames[sample.name], context="input")
                result.chunks = [first]
                self._save(sample, frames[sample.name], tokens.get(sample.name))
            else:
                continue  # failed before or during its first chunk
            self._add_totals(result)
            if len(result.chunks) < num_chunks(sample.num_frames):
                todo.append(sample)
        while todo and not should_stop():
            todo = self._pass(todo, frames, contexts)
        return frames

    def _pass(self, todo: list, frames: dict, contexts: dict) -> list:
        """The next chunk of every sample in ``todo``; returns those that still have chunks to go."""
        from cosmos_cli.pipeline.pipeline import SampleResult, _recorded

        p = self.pipeline
        copies, inputs, scratch = [], {}, {}
        for sample in todo:
            index, total = len(self.results[sample.name].chunks), num_chunks(sample.num_frames)
            info(
                f"[bold]chunk {index + 1}/{total}[/bold] of {sample.name}: frames "
                f"{len(frames[sample.name])}-{len(frames[sample.name]) + NEW_FRAMES - 1} from the last "
                f"{CONTEXT_FRAMES}"
            )
            self.on_event(sample.name, "chunk", index + 1, total)
            copies.append(replace(sample, seed=chunk_seed(sample.seed, index), num_input_frames=CONTEXT_FRAMES))
            inputs[sample.name] = frames[sample.name][-CONTEXT_FRAMES:]
            scratch[sample.name] = SampleResult(sample.name)
        tokens = p._stage_tokenize(copies, inputs, scratch, self.on_event)
        copies = [c for c in copies if c.name in tokens]
        generated = p._stage_ar(copies, tokens, contexts, scratch, self.on_event)
        decoded = p._stage_decode(copies, generated, contexts, scratch, self.on_event)
        still = []
        for sample in todo:
            result, part = self.results[sample.name], scratch[sample.name]
            if sample.name not in decoded:  # this chunk failed: the sample fails with the chunk's error
                result.status, result.error = part.status, part.error or "a chunk produced no frames"
                result.exit_code, result.exception = part.exit_code or 1, part.exception
                if result.status == "pending":
                    result.status = "failed"
                continue
            with _recorded(result):
                start = len(frames[sample.name])
                frames[sample.name] = np.concatenate([frames[sample.name], decoded[sample.name][CONTEXT_FRAMES:]])
                context = [start - CONTEXT_FRAMES, start]
                record = self._record(sample, len(result.chunks), part, frames[sample.name], context=context)
                result.chunks.append(record)
                self._add_totals(result, only=record)
                self._save(sample, frames[sample.name], generated[sample.name])
                if len(result.chunks) < num_chunks(sample.num_frames):
                    still.append(sample)
        return still

    def _record(self, sample, index: int, result, frames: np.ndarray, context) -> dict:
        """One entry of ``generation.json``'s ``chunks``: its frames in the video, seeds, timings."""
        cfg = self.pipeline.config
        new = CHUNK_FRAMES if index == 0 else NEW_FRAMES
        seed = chunk_seed(sample.seed, index)
        dd_seed = None
        if result.decoder == "diffusion_decoder":
            dd_seed = cfg.dd_seed if cfg.dd_seed is not None else seed
        return {
            "index": index,
            "frames": [len(frames) - new, len(frames)],
            "context_frames": context,
            "seed": seed,
            "dd_seed": dd_seed,
            "decoder": result.decoder,
            "timings_s": {k: v for k, v in result.timings.items() if k in self.STAGES},
            "decoding": dict(result.decoding),
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }

    def _add_totals(self, result, only: dict | None = None) -> None:
        """``timings_s`` of the whole sample: each per-chunk stage summed over its chunks."""
        records = result.chunks if only is None else [only]
        if only is None:
            for stage in self.STAGES:
                result.timings.pop(stage, None)
        for record in records:
            for stage, seconds in record["timings_s"].items():
                result.timings[stage] = round(result.timings.get(stage, 0.0) + seconds, 3)

    def _save(self, sample, frames: np.ndarray, tokens: torch.Tensor | None) -> None:
        """Persist the finished chunk (skipped for one-chunk samples: nothing to resume)."""
        total = num_chunks(sample.num_frames)
        result = self.results[sample.name]
        if total == 1 or len(result.chunks) >= total:
            return  # the last chunk is followed at once by the guardrail and the mp4
        try:
            self._store(sample).save(self._fingerprint(sample), result.chunks, frames, tokens)
        except OSError as err:  # resuming is a convenience: a full disk must not fail the sample
            warn(f"{sample.name}: could not save chunk {len(result.chunks)} for resuming ({err})")

    # -- after the guardrail -------------------------------------------------------------------------
    def record_frames(self, live: list, videos: dict) -> None:
        """Each chunk record gets the hash of its frames as written (after the video guardrail)."""
        for sample in live:
            result = self.results[sample.name]
            video = videos.get(sample.name)
            if video is None:
                continue
            for record in result.chunks:
                start, end = record["frames"]
                record["frames_sha256"] = frames_sha256(video[start:end])

    def finish(self, live: list) -> None:
        """A finished sample's saved chunks go (a failed one keeps them: the next run resumes there)."""
        for sample in live:
            if self.results[sample.name].status in ("succeeded", "blocked"):
                self._store(sample).clear()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
