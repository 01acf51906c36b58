"""The parallel layer's pure parts: sample sharding, rank roles, TP sizes, torchrun argv, failure reports."""

from __future__ import annotations

import itertools
import sys

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
from torch.distributed.run import parse_args

from cosmos_cli.errors import BadInput, DistributedError
from cosmos_cli.models.ar.tiny import TINY_V2W
from cosmos_cli.models.config import PRESETS
from cosmos_cli.parallel import launch
from cosmos_cli.parallel.data import shard_samples
from cosmos_cli.parallel.dist import ParallelDims, default_tp
from cosmos_cli.parallel.launch import TorchrunEnv, failure_error, record_failure, should_relaunch, torchrun_command
from cosmos_cli.parallel.tp import check_tp, valid_tp_sizes


# ---- data parallelism -------------------------------------------------------------------------
def test_shard_samples_deterministic_disjoint_complete_balanced():
    for n, dp in itertools.product(range(0, 12), range(1, 9)):
        samples = [f"line {i}" for i in range(n)]
        shares = [shard_samples(samples, r, dp) for r in range(dp)]
        assert shares == [shard_samples(list(samples), r, dp) for r in range(dp)]
        indices = [i for share in shares for i, _ in share]
        assert sorted(indices) == list(range(n))  # complete, and disjoint (no index twice)
        assert all(samples[i] == s for share in shares for i, s in share)
        sizes = [len(share) for share in shares]
        assert max(sizes) - min(sizes) <= 1


def test_shard_samples_five_lines_two_ranks():
    lines = [{"prompt": f"p{i}"} for i in range(5)]
    assert [i for i, _ in shard_samples(lines, 0, 2)] == [0, 2, 4]
    assert [i for i, _ in shard_samples(lines, 1, 2)] == [1, 3]


@pytest.mark.parametrize("rank,size", [(2, 2), (-1, 2), (0, 0)])
def test_shard_samples_rejects_bad_ranks(rank, size):
    with pytest.raises(ValueError):
        shard_samples([1, 2, 3], rank, size)


# ---- rank roles and TP sizes ----------------------------------------------------------------------
def test_parallel_dims_roles():
    roles = [ParallelDims(world=8, tp=2, rank=r) for r in range(8)]
    assert all(d.dp == 4 for d in roles)
    assert [d.tp_rank for d in roles] == [0, 1] * 4
    assert [d.dp_rank for d in roles] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [d.tp_leader for d in roles] == [0, 0, 2, 2, 4, 4, 6, 6]
    assert [r for r, d in enumerate(roles) if d.writes_outputs] == [0, 2, 4, 6]
    assert [d.is_main for d in roles] == [True] + [False] * 7


def test_parallel_dims_rejects_tp_not_dividing_world():
    with pytest.raises(BadInput, match="--tp 4 does not divide the 6 processes") as err:
        ParallelDims(world=6, tp=4)
    assert "1, 2, 3, 6" in err.value.one_line()


@pytest.mark.parametrize(
    "world,samples,expected",
    [(2, 1, 2), (8, 1, 8), (8, 5, 2), (8, 8, 1), (8, 100, 1), (16, 1, 8), (3, 1, 1), (4, 2, 2)],
)
def test_default_tp_prefers_data_parallelism_up_to_the_samples(world, samples, expected):
    assert default_tp(world, samples, n_kv_heads=8) == expected


def test_tp_sizes_follow_the_kv_heads():
    assert valid_tp_sizes(PRESETS["5b-video2world"]) == [1, 2, 4, 8]
    assert valid_tp_sizes(PRESETS["13b-video2world"]) == [1, 2, 4, 8]
    assert valid_tp_sizes(TINY_V2W) == [1, 2]
    check_tp(PRESETS["5b-video2world"], 8)
    with pytest.raises(BadInput, match="--tp 3 cannot split") as err:
        check_tp(PRESETS["5b-video2world"], 3)
    assert "use --tp 1, 2, 4, 8" in err.value.one_line()


# ---- torchrun command line ------------------------------------------------------------------------
def test_single_node_command_is_standalone_and_torchrun_parses_it():
    cmd = torchrun_command(4, argv=["generate", "--input", "a b.mp4", "--gpus", "4"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--rdzv-endpoint" not in cmd
    args = parse_args(cmd[3:])
    assert (args.nproc_per_node, args.standalone, args.module) == ("4", True, True)
    assert args.training_script == "cosmos_cli"
    assert args.training_script_args == ["generate", "--input", "a b.mp4", "--gpus", "4"]
    assert "'a b.mp4'" in launch.format_command(cmd)


def test_multi_node_command_passes_rendezvous_through():
    cmd = torchrun_command(8, nnodes=2, node_rank=1, rdzv_endpoint="node0:29500", argv=["generate"])
    args = parse_args(cmd[3:])
    assert (args.nnodes, args.node_rank, args.rdzv_backend, args.rdzv_endpoint) == ("2", 1, "c10d", "node0:29500")
    assert not args.standalone
    static = torchrun_command(2, nnodes=2, rdzv_endpoint="10.0.0.1:1234", rdzv_backend="static", argv=[])
    assert parse_args(static[3:]).rdzv_backend == "static"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(nproc=0), "--gpus 0"),
        (dict(nproc=2, nnodes=2), "needs a rendezvous address"),
        (dict(nproc=2, nnodes=2, node_rank=2, rdzv_endpoint="h:1"), "--node-rank 2 is outside 0..1"),
        (dict(nproc=2, nnodes=2, rdzv_endpoint="node0"), "is not HOST:PORT"),
        (dict(nproc=2, nnodes=2, rdzv_endpoint="node0:99999"), "is not HOST:PORT"),
        (dict(nproc=2, rdzv_backend="zookeeper"), "unknown --rdzv-backend"),
    ],
)
def test_bad_launch_options_are_one_line_errors(kwargs, match):
    with pytest.raises(BadInput, match=match):
        torchrun_command(argv=["generate"], **kwargs)


def test_torchrun_env_and_relaunch_decision(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert TorchrunEnv.from_environ() is None
    assert should_relaunch(2) and should_relaunch(1, nnodes=2) and not should_relaunch(1)
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert TorchrunEnv.from_environ() == TorchrunEnv(rank=5, world=8, local_rank=1, local_world=4)
    assert not should_relaunch(4)  # already a worker: never launch again


# ---- failure reports ------------------------------------------------------------------------------
def _record(tmp_path, monkeypatch, rank: int, exc: Exception, now: float) -> str:
    path = tmp_path / f"error{rank}.json"
    monkeypatch.setenv(launch.ERROR_FILE_ENV, str(path))
    monkeypatch.setattr(launch.time, "time", lambda: now)
    record_failure(exc, TorchrunEnv(rank=rank, world=2, local_rank=rank, local_world=2))
    return str(path)


def test_first_recorded_failure_is_reported_with_its_rank(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(launch.LAUNCHED_ENV, raising=False)
    cause = _record(tmp_path, monkeypatch, 1, BadInput("bad frames", "use 9"), now=100.25)
    assert capsys.readouterr().err == "error: rank 1 failed: bad frames (use 9)\n"
    follow = _record(tmp_path, monkeypatch, 0, RuntimeError("Connection closed by peer\nmore"), now=100.75)
    assert capsys.readouterr().err == ""  # rank 0's error goes through the CLI's own line
    failures = {0: ProcessFailure(0, 10, 1, follow), 1: ProcessFailure(1, 11, 2, cause)}
    # torchrun's own summary can read the records (message and integer timestamp).
    assert failures[1].message["message"] == "rank 1: bad frames (use 9)" and failures[1].timestamp == 100
    err = failure_error(ChildFailedError("cosmos_cli", failures))
    assert isinstance(err, DistributedError)
    assert err.one_line() == "rank 1 failed: bad frames (use 9)"
    assert err.exit_code == 2


def test_unrecorded_failures_name_the_killed_rank_not_the_stopped_ones(tmp_path):
    missing = str(tmp_path / "none.json")
    stopped = ProcessFailure(0, 10, -15, missing)  # SIGTERM from the agent after rank 1 died
    killed = ProcessFailure(1, 11, -9, missing)
    err = failure_error(ChildFailedError("cosmos_cli", {0: stopped, 1: killed}))
    assert err.one_line() == "rank 1 was killed by SIGKILL (often the host ran out of memory)"
    crashed = failure_error(ChildFailedError("cosmos_cli", {0: stopped, 1: ProcessFailure(1, 11, 139, missing)}))
    assert crashed.message == "rank 1 exited with code 139"
