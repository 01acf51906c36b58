"""Tensor and data parallelism with real torch.distributed: two CPU ranks over gloo, launched by torchrun.

One launch (``tests/dist_scripts/tp_golden.py``, through ``relaunch`` as ``--gpus 2`` does) measures
everything; the tests below assert on what each rank wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_path

SCRIPT = REPO / "tests" / "dist_scripts" / "tp_golden.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    golden = sorted(p.parent for p in shared_path("golden").glob("*/config.json"))[0]
    out = tmp_path_factory.mktemp("tp")
    (out / "batch.jsonl").write_text("".join(json.dumps({"prompt": f"clip {i}"}) + "\n" for i in range(5)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(golden), str(out)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_tp2_logits_equal_dense_and_golden(ranks):
    _, results = ranks
    for r in results:
        assert r["backend"] == "gloo"
        assert r["inputs_equal"]  # rank 1 received the leader's prompt and context
        assert r["prefill_vs_dense"] <= 1e-5 and r["decode_vs_dense"] <= 1e-5
        assert r["prefill_vs_golden"] <= r["atol"] and r["decode_vs_golden"] <= r["atol"]
        assert r["fused_vs_dense"] <= 1e-5
        assert r["compiled_vs_eager"] <= 1e-6


def test_tp2_tokens_identical_on_every_rank_and_to_dense(ranks):
    _, results = ranks
    for r in results:
        assert r["greedy_equal_golden"]
        assert r["sampled"] == r["dense_sampled"] == r["fused_sampled"]
    assert results[0]["sampled"] == results[1]["sampled"]


def test_tp2_ranks_hold_only_their_shards(ranks):
    _, results = ranks
    assert [r["tp_rank"] for r in results] == [0, 1]
    for r in results:
        assert r["local_n_kv_heads"] == 1 and r["local_cache_heads"] == 1  # 2 KV heads split over 2 ranks
        assert r["local_wq_rows"] == 64  # 2 of the 4 query heads of 32 dims
        assert r["local_params"] < 0.55 * r["dense_params"]  # only norms are replicated


def test_dp2_writes_every_sample_exactly_once(ranks):
    out, results = ranks
    for r in results:
        assert (r["tp_group_size"], r["dp_group_size"]) == (1, 2)
        assert r["dp_indices"] == [[0, 2, 4], [1, 3]]  # gathered on both ranks
    written = {int(p.stem): json.loads(p.read_text()) for p in (out / "samples").glob("*.json")}
    assert sorted(written) == [0, 1, 2, 3, 4]
    assert {i: w["rank"] for i, w in written.items()} == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    assert all(w["prompt"] == f"clip {i}" for i, w in written.items())
