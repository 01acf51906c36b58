"""offload-profile's measured mode on the CPU: the stand-in pipeline at tiny sizes, rows, records, summary,
and ``generate --gpu-memory-budget``. GPU memory is not measured here (the H100 figures and their command are in
docs/offload.md); what is checked is that every row runs the real pipeline code and reports what it did."""

from __future__ import annotations

import json

import pytest

from cosmos_cli.cli import main
from cosmos_cli.errors import BadInput
from cosmos_cli.offload import profile as prof
from cosmos_cli.offload.placements import STAGE_NAMES
from cosmos_cli.offload.profile import RowSpec
from tests.conftest import TINY_AR_DIR, shared_path

STRATEGIES = ["none", "all-but-ar", "all", "auto"]


def test_rows_parse_with_modifiers():
    assert prof.parse_row("all-but-ar/b4/warm", STRATEGIES) == RowSpec("all-but-ar", batch=4, warm=True)
    spec = prof.parse_row(" all/no-dd/blocklist/fp32-t5 ", STRATEGIES)
    assert (spec.no_dd, spec.blocklist, spec.fp32_t5, spec.batch) == (True, True, True, 1)
    assert spec.name == "all/no-dd/blocklist/fp32-t5"
    with pytest.raises(BadInput, match="unknown strategy 'most'"):
        prof.parse_row("most", STRATEGIES)
    with pytest.raises(BadInput, match="unknown modifier 'b0'"):
        prof.parse_row("all/b0", STRATEGIES)


def test_all_stream_row_is_known_and_checked_against_the_ar_bound():
    from cosmos_cli.models.config import PRESETS
    from cosmos_cli.offload.plan import strategies_for

    names = [s.name for s in strategies_for(PRESETS["5b-video2world"])] + ["auto"]
    assert names[-2:] == ["all-stream", "auto"]
    assert prof.parse_row("all-stream/no-dd", names) == RowSpec("all-stream", no_dd=True)
    gib = 2**30

    def row(name: str, peak: int, ar_peak: int) -> dict:
        stages = {"ar_model": {"peak_allocated": ar_peak}, "diffusion_decoder": {"peak_allocated": peak}}
        return {"row": name, "strategy": name.split("/")[0], "error": None, "peak_allocated": peak, "policy": {},
                "peak_reserved": peak, "full_length_s": 1.0, "total_s": 1.0, "stages": stages}  # fmt: skip

    rows = [row("all", 17 * gib, 10 * gib), row("all-stream", 10 * gib, 10 * gib)]
    checks = prof.summarize(rows, float("inf"), 0, {"all": 11 * gib, "all-stream": 11 * gib})["full_offload"]
    assert [(c["row"], c["ar_stage_within_bound"], c["peak_within_bound"]) for c in checks] == [
        ("all", True, False), ("all-stream", True, True)]  # fmt: skip


def test_standin_pipeline_rows_with_offloading_on_the_cpu(tiny_checkpoints, tmp_path):
    opts = prof.ProfileOptions(
        checkpoint_dir=tiny_checkpoints, ar_model_dir=TINY_AR_DIR, load_format="dummy", device="cpu",
        ar_tokens=4, dd_steps=1, policies={"none": {}, "all": dict.fromkeys(STAGE_NAMES, "cpu")},
        offload=True, workdir=tmp_path,
    )  # fmt: skip
    rows = prof.profile([RowSpec("none", batch=2), RowSpec("all", batch=2)], opts)
    none, everything = rows
    assert none["error"] is None and everything["error"] is None
    assert set(none["stages"]) == set(STAGE_NAMES)  # every stage ran as a stand-in
    assert set(everything["policy"].values()) == {"cpu"}
    for name, record in everything["stages"].items():
        # Parked in host memory during setup: the batch brings each stage in once, reads nothing from disk.
        assert (record["loads"], record["moves"], record["uses"]) == (0, 1, 1), name
        assert record["bytes_moved"] > 0
    for record in none["stages"].values():
        assert (record["loads"], record["moves"]) == (0, 0)
    assert everything["setup_loads"] == dict.fromkeys(STAGE_NAMES, 1)
    ar = everything["ar"]
    assert (ar["tokens"], ar["requested"], ar["batch"]) == (4, 72, 2)  # 120 tokens - 48 of context
    assert everything["dd_calls"] == {"made": 2 * 1 * 2, "full": 2 * 1 * 16}
    assert everything["full_length_s"] > everything["total_s"]
    summary = prof.summarize(rows, float("inf"), 0, {"all/b2": 10**9})
    assert summary["comparisons"][0]["baseline"] == "none/b2"
    assert summary["full_offload"][0]["ar_stage_within_bound"]


def test_measured_command_writes_table_and_json(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = main(["offload-profile", "--device", "cpu", "--load-format", "dummy", "--checkpoint-dir",
                 str(tiny_checkpoints), "--ar-model-dir", TINY_AR_DIR, "--rows", "none", "--ar-tokens", "2",
                 "--guardrail", "blocklist", "--disable-diffusion-decoder", "--json", str(out)])  # fmt: skip
    assert code == 0
    assert "MEASURED: cosmos-tiny-video2world" in capsys.readouterr().out
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["error"] is None and row["row"] == "none"
    assert set(row["stages"]) == {"text_guardrail", "text_encoder", "video_tokenizer", "ar_model"}
    assert row["stages"]["video_tokenizer"]["uses"] == 2  # encode, then decode (no diffusion decoder)
    assert row["plan_peak"] > 0 and report["summary"]["recommended"]["row"] == "none"


def _generate(ckpt, out, *extra: str) -> int:
    clip = shared_path("data", "clips", "input.mp4")
    return main(["generate", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR, "--input", str(clip),
                 "--prompt", "a car drives down the street", "--output-dir", str(out), "--guardrail", "blocklist",
                 "--disable-diffusion-decoder", *extra])  # fmt: skip


def test_generate_gpu_memory_budget_picks_and_records_a_placement(tiny_checkpoints, tmp_path, capsys):
    assert _generate(tiny_checkpoints, tmp_path, "--gpu-memory-budget", "24", "--placement", "ar_model=cpu") == 0
    assert "placement for 24 GiB: ar_model=cpu" in capsys.readouterr().err
    record = json.loads((tmp_path / "input" / "generation.json").read_text())
    placements = record["config"]["placements"]
    assert placements["ar_model"] == "cpu"  # the explicit flag stays
    assert placements["text_encoder"] == "gpu"  # the tiny rest fits
    assert _generate(tiny_checkpoints, tmp_path, "--gpu-memory-budget", "0.5", "--overwrite") == 2
    assert "no placement fits 0.5 GiB" in capsys.readouterr().err
