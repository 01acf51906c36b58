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
from tests.golden_sets import golden_folders

SCRIPT = REPO / "tests" / "dist_scripts" / "tp_golden.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    golden = shared_path("golden")  # every set, in one launch
    out = tmp_path_factory.mktemp("tp")
    (out / "batch.jsonl").write_text("".join(json.dumps({"prompt": f"clip {i}"}) + "\n" for i in range(5)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(golden), str(out)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _split_sets(results) -> list[list[dict]]:
    """Per rank, the measurements of every set TP=2 can split; every set was visited on every rank, and one
    that cannot be split (a single KV head) got ``check_tp``'s error."""
    names = [folder.name for folder in golden_folders()]
    for r in results:
        assert sorted(r["sets"]) == names
        for name, s in r["sets"].items():
            assert s["splittable"] or "cannot split" in s["error"], (name, s)
    split = [[s for s in r["sets"].values() if s["splittable"]] for r in results]
    assert split[0], "no golden set can be split over 2 ranks"
    return split


def test_tp2_logits_equal_dense_and_golden(ranks):
    _, results = ranks
    assert all(r["backend"] == "gloo" for r in results)
    for sets in _split_sets(results):
        for r in sets:
            assert r["inputs_equal"]  # rank 1 received the leader's prompt and context (none for base)
            assert r["prefill_vs_dense"] <= 1e-5 and r["decode_vs_dense"] <= 1e-5
            assert r["prefill_vs_golden"] <= r["atol"] and r["decode_vs_golden"] <= r["atol"]
            assert r["fused_vs_dense"] <= 1e-5
            assert r["compiled_vs_eager"] <= 1e-6


def test_tp2_tokens_identical_on_every_rank_and_to_dense(ranks):
    _, results = ranks
    split = _split_sets(results)
    for sets in split:
        for r in sets:
            assert r["greedy_equal_golden"]
            assert r["sampled"] == r["dense_sampled"] == r["fused_sampled"]
    assert [r["sampled"] for r in split[0]] == [r["sampled"] for r in split[1]]


def test_tp2_ranks_hold_only_their_shards(ranks):
    _, results = ranks
    assert [r["tp_rank"] for r in results] == [0, 1]
    for sets in _split_sets(results):
        for r in sets:
            half_kv = r["n_kv_heads"] // 2
            assert r["local_n_kv_heads"] == half_kv and r["local_cache_heads"] == half_kv
            assert r["local_wq_rows"] == r["n_heads"] * r["head_dim"] // 2  # half the query heads
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
