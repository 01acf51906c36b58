"""The generate request: what to make for each sample and how to run, typed and checked once.

``generate``'s flags, each line of a JSONL batch and each ``serve`` upload all become the same objects
(:class:`SampleRequest` per sample; :class:`GenerateRequest` around them with the pipeline's
:class:`~cosmos_cli.pipeline.pipeline.PipelineConfig`), and one validator (:func:`validate`, the
:data:`RULES` table) checks them before any process starts or any model loads, so a bad value is one line
and exit 2 (HTTP 422 in ``serve``) whoever sent it.

Adding a field: declare it on the dataclass where it belongs (a per-sample field on :class:`SampleRequest`
is then also read from JSONL lines with its type checked, and from ``serve``'s form); if it has a range,
add one line to :data:`RULES`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmos_cli.errors import BadInput
from cosmos_cli.io.video import CRF_RANGE, DEFAULT_CRF

if typing.TYPE_CHECKING:
    from cosmos_cli.pipeline.pipeline import PipelineConfig
    from cosmos_cli.pipeline.samples import Sample

BACKENDS = ("cosmos-cli", "nemo")
"""What runs ``generate``: our engine, or NVIDIA's NeMo script (``cosmos_cli/nemo/backend.py``)."""

SEED_LIMIT = 2**63
"""Seeds are int64 on the device (``torch.tensor(seeds)``): one past the largest accepted."""


@dataclass(frozen=True)
class Rule:
    """A range check: ``ok(value)`` must hold for a set (non-None) value; else "NAME <must>, got V (<hint>)"."""

    ok: Callable[[Any], bool]
    must: str
    hint: str

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise BadInput(f"{name} {self.must}, got {value!r}", self.hint)


@dataclass(frozen=True)
class CheckedBy:
    """A field whose own checker words the error, because it knows more than a range (the nearest valid
    values, a cap and why): ``checker(value, name)`` raises :class:`BadInput`."""

    checker: Callable[[Any, str], Any]

    def check(self, name: str, value: Any) -> None:
        self.checker(value, name)


def _finite(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and check(v)


_SEED = Rule(lambda v: 0 <= v < SEED_LIMIT, "must be in [0, 2**63)", "use a non-negative integer below 2**63")
RULES: dict[str, Rule | CheckedBy] = {
    "top_p": Rule(_finite(lambda v: 0 < v <= 1), "must be in (0, 1]", "leave it out for the model's tuned value"),
    "temperature": Rule(_finite(lambda v: v >= 0), "must be 0 or more", "0 is greedy; 1 is the default"),
    "seed": _SEED,
    "dd_seed": _SEED,
    "fps": Rule(_finite(lambda v: v > 0), "must be positive", "e.g. 25"),
    "batch_size": Rule(lambda v: v >= 1, "must be 1 or more", "use 1 or more"),
    "num_input_frames": Rule(lambda v: v in (1, 9), "must be 1 or 9", "use 9 (the default) or 1"),
    "num_frames": CheckedBy(lambda v, name: _check_num_frames(v, name)),
    "crf": Rule(lambda v: CRF_RANGE[0] <= v <= CRF_RANGE[1], "must be in 0..51", "23 is NVIDIA's; lower is better"),
    "scd_window": Rule(lambda v: v >= 1, "must be at least 1", "e.g. 32"),
    "gpu_memory_budget": Rule(_finite(lambda v: v > 0), "must be positive", "give GiB, e.g. 24"),
    "gpus": Rule(lambda v: v >= 1, "must be at least 1", "use --gpus 1 for one GPU"),
    "nnodes": Rule(lambda v: v >= 1, "must be at least 1", "use --nnodes 1 for one node"),
    "tp": Rule(lambda v: v >= 1, "must be at least 1", "use 1, 2, 4 or 8"),
    "load_format": Rule(lambda v: v in ("auto", "dummy"), "must be auto or dummy", "use auto or dummy"),
    "text_encoder_dtype": Rule(lambda v: v in ("bf16", "fp32"), "must be bf16 or fp32", "use bf16 or fp32"),
    "quantization": Rule(lambda v: v in ("bf16", "int8", "fp8"), "must be bf16, int8 or fp8", "bf16 is as released"),
    "decoding": Rule(lambda v: v in ("sequential", "scd"), "must be sequential or scd", "use sequential or scd"),
    "backend": Rule(lambda v: v in BACKENDS, "must be cosmos-cli or nemo", "nemo runs NVIDIA's NeMo script"),
}
"""One line per ranged field, applied by name wherever the field appears (sample, run or pipeline)."""


def _check_num_frames(value: int, name: str) -> None:
    from cosmos_cli.pipeline.long_video import check_num_frames

    check_num_frames(value, name)


Speller = Callable[[str], str]
"""How a field is named in a message: ``--top-p`` on the command line, ``top_p`` for ``serve``."""


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_name(name: str) -> str:
    return name


def validate(obj: Any, spell: Speller = flag_name) -> Any:
    """Check every field of the dataclass ``obj`` (and of the dataclasses it holds) against :data:`RULES`;
    raise :class:`BadInput` naming the first bad one. Returns ``obj``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, spell)
            continue
        rule = RULES.get(f.name)
        if rule is not None and value is not None:
            rule.check(spell(f.name), value)
    return obj


# ---- what to generate ------------------------------------------------------------------------------
@dataclass
class SampleRequest:
    """One video to generate. Every field but ``name`` may also be given per JSONL line and per upload."""

    prompt: str = ""
    visual_input: Path | None = None
    seed: int = 0
    top_p: float | None = None
    """None: the run's ``--top-p`` (itself None: the model's tuned value)."""
    temperature: float | None = None
    """None: the run's ``--temperature``."""
    num_input_frames: int = 9
    num_frames: int = 33
    """Frames of the output: 33, or 33 + 24k by continuing chunk after chunk (``pipeline/long_video.py``)."""
    crf: int = DEFAULT_CRF
    """libx264 quality of the written mp4 (``io/video.py``): 23 is NVIDIA's (libx264's default)."""
    name: str | None = field(default=None, metadata={"line": False})
    """The output's name (``--video-save-name``; JSONL lines are named from their number and input)."""


LINE_FIELDS = tuple(f.name for f in dataclasses.fields(SampleRequest) if f.metadata.get("line", True))
"""The keys a JSONL line may hold."""


@dataclass
class LaunchRequest:
    """How many processes run the job (``--gpus``/``--nnodes``: torchrun) and how they split the model."""

    gpus: int = 1
    tp: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_backend: str | None = None


@dataclass
class GenerateRequest:
    """Everything ``generate`` was asked: the samples, how to build the pipeline, where to write."""

    samples: list[SampleRequest]
    pipeline: PipelineConfig
    output_dir: Path
    batch_input: Path | None = None
    """The JSONL file the samples came from (then a ``summary.json`` is written), else None."""
    batch_size: int | None = None
    """Samples decoded together; None: from free memory (``--batch-size 0``)."""
    gpu_memory_budget: float | None = None
    overwrite: bool = False
    launch: LaunchRequest = field(default_factory=LaunchRequest)
    backend: str = "cosmos-cli"
    cosmos_repo: Path | None = None
    """``--backend nemo``: the NVIDIA Cosmos checkout (None: ``settings.cosmos_repo_dir``)."""
    given_flags: frozenset[str] = frozenset()
    """Parameters set on the command line rather than defaulted (the NeMo backend refuses a seed at all)."""

    @property
    def writes_summary(self) -> bool:
        """A batch, or a video made of several chunks (``--num-frames`` past 33): both resume after an
        interruption, so both leave a ``summary.json`` saying what is done."""
        return self.batch_input is not None or any(s.num_frames > 33 for s in self.samples)

    def to_samples(self) -> list[Sample]:
        return [to_sample(s, i) for i, s in enumerate(self.samples)]


def to_sample(request: SampleRequest, index: int = 0) -> Sample:
    """The pipeline's :class:`Sample` for a request (every field the two share is copied)."""
    from cosmos_cli.pipeline.samples import Sample, sample_name

    shared = {f.name for f in dataclasses.fields(Sample)}
    values = {k: v for k, v in dataclasses.asdict(request).items() if k in shared}
    stem = Path(request.name).stem if request.name else Path(request.visual_input or "sample").stem
    values.update(name=sample_name(stem), visual_input=Path(request.visual_input or ""))
    if "index" in shared:
        values["index"] = index
    return Sample(**values)


def needs_prompt(checkpoint_dir: Path, ar_model_dir: str) -> bool:
    """Whether the model takes a text prompt (Video2World) or continues a clip alone (base models):
    the same architecture lookup as the AR stage (``cosmos_arch.json``, else the folder name)."""
    from cosmos_cli.checkpoints import CheckpointLayout
    from cosmos_cli.stages.ar_model import resolve_model_args

    args = resolve_model_args(CheckpointLayout(Path(checkpoint_dir), ar_model_dir).ar_dir)
    return bool(args.cross_attn_every_k_layers)


# ---- JSONL batches and form fields --------------------------------------------------------------------
def read_jsonl(path: Path, defaults: SampleRequest) -> list[SampleRequest]:
    """The samples of a JSONL file: one ``{"prompt", "visual_input", ...}`` object per line, each field's
    type and range checked, errors naming ``FILE:LINE``. Relative inputs resolve against the file's folder;
    names are ``<line:03d>_<input stem>`` (0-based line), so duplicate basenames never collide."""
    from cosmos_cli.pipeline.samples import sample_name

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"batch file not found: {path}", "pass a JSONL file with one {prompt, visual_input} per line")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read the batch file {path} ({err})", "pass a UTF-8 JSONL file") from err
    hints = typing.get_type_hints(SampleRequest)
    samples = []
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        where = f"{path}:{number + 1}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadInput(f"{where} is not valid JSON ({err.msg})", "one JSON object per line") from err
        if not isinstance(row, dict) or "visual_input" not in row:
            raise BadInput(f'{where} has no "visual_input"', 'each line needs {"prompt", "visual_input"}')
        unknown = sorted(set(row) - set(LINE_FIELDS))
        if unknown:
            raise BadInput(f"{where}: unknown field {unknown[0]!r}", f"a line may hold {', '.join(LINE_FIELDS)}")
        values = {k: _typed(f"{where}: {k}", v, hints[k]) for k, v in row.items()}
        sample = dataclasses.replace(defaults, **values)
        if not sample.visual_input.is_absolute():
            sample.visual_input = path.parent / sample.visual_input
        sample.name = f"{number:03d}_{sample_name(sample.visual_input.stem)}"
        validate(sample, lambda name, _w=where: f"{_w}: {name}")
        samples.append(sample)
    if not samples:
        raise BadInput(f"batch file {path} holds no samples", "add one JSON object per line")
    return samples


def sample_from_fields(fields: dict[str, str], names: tuple[str, ...]) -> SampleRequest:
    """A sample from text fields (``serve``'s form): each of ``names`` parsed by its declared type,
    then validated; errors name the field (``top_p must be in (0, 1], got 1.5 ...``)."""
    hints = typing.get_type_hints(SampleRequest)
    values = {}
    for name in names:
        text = fields.get(name, "").strip()
        if text:
            values[name] = _parsed(name, text, hints[name])
    return validate(SampleRequest(**values), field_name)


def _kinds(hint: Any) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _kind_name(kinds: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", Path: "a path (string)", bool: "true or false"}
    return " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not type(None))


def _typed(name: str, value: Any, hint: Any) -> Any:
    """A JSON value checked against the field's type (``int`` is no ``bool``; a number may be an int)."""
    kinds = _kinds(hint)
    if value is None and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue
        if kind is int and isinstance(value, int):
            return value
        if kind is float and isinstance(value, (int, float)):
            if not math.isfinite(value):
                break
            return float(value)
        if kind in (str, Path) and isinstance(value, str):
            return kind(value)
    raise BadInput(f"{name} must be {_kind_name(kinds)}, got {json.dumps(value)}", "fix the value on that line")


def _parsed(name: str, text: str, hint: Any) -> Any:
    """A form field's text parsed as the field's type."""
    kinds = [k for k in _kinds(hint) if k is not type(None)]
    kind = kinds[0]
    if kind in (str, Path):
        return kind(text)
    try:
        value = kind(text)
    except ValueError:
        raise BadInput(f"{name} must be {_kind_name((kind,))}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise BadInput(f"{name} must be a finite number, got {text!r}")
    return value


# ---- how the pipeline is built: one builder for generate and serve -------------------------------------
OFFLOAD_FLAGS = {
    "offload_guardrail_models": ("text_guardrail", "video_guardrail"),
    "offload_text_encoder_model": ("text_encoder",),
    "offload_tokenizer": ("video_tokenizer",),
    "offload_ar_model": ("ar_model",),
    "offload_diffusion_decoder": ("diffusion_decoder",),
}
"""NVIDIA's per-stage ``--offload_*`` flags -> the stages they put in host memory."""


def pipeline_config(
    *,
    offload_all: bool = False,
    offload_flags: dict[str, bool] | None = None,
    placement: list[str] | None = None,
    disable_diffusion_decoder: bool = False,
    require_diffusion_decoder: bool = False,
    **fields: Any,
) -> PipelineConfig:
    """The :class:`PipelineConfig` for a command's flags (``generate`` and ``serve`` share it), validated.

    ``fields`` are PipelineConfig's own fields; the offload flags become ``placements`` and the two
    decoder flags become ``diffusion_decoder`` (True: required; False: the DV decoder; None: when present).
    """
    from cosmos_cli.pipeline.pipeline import PipelineConfig

    if disable_diffusion_decoder and require_diffusion_decoder:
        raise BadInput("--diffusion-decoder and --disable-diffusion-decoder contradict", "pass one of them")
    decoder = False if disable_diffusion_decoder else (True if require_diffusion_decoder else None)
    placements = placements_from_flags(offload_all, offload_flags or {}, placement)
    return validate(PipelineConfig(placements=placements, diffusion_decoder=decoder, **fields))


def placements_from_flags(offload_all: bool, flags: dict[str, bool], placement: list[str] | None) -> dict[str, str]:
    """``--offload all``, NVIDIA's ``--offload_*`` flags and ``--placement STAGE=WHERE`` (last wins)."""
    from cosmos_cli.offload.placements import PLACEMENTS, STAGE_NAMES, check_placement

    chosen = dict.fromkeys(STAGE_NAMES, "cpu") if offload_all else {}
    for flag, stages in OFFLOAD_FLAGS.items():
        if flags.get(flag):
            chosen.update(dict.fromkeys(stages, "cpu"))
    for item in placement or []:
        stage, _, where = item.partition("=")
        if stage not in STAGE_NAMES or where not in PLACEMENTS:
            raise BadInput(
                f"bad --placement {item!r}",
                f"use STAGE=WHERE with STAGE in {', '.join(STAGE_NAMES)} and WHERE {'|'.join(PLACEMENTS)}",
            )
        check_placement(stage, where)
        chosen[stage] = where
    return chosen
