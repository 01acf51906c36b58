"""Run ``cosmos-cli`` under torchrun, and turn a failing rank into one error message.

Launch: ``cosmos-cli generate --gpus N`` builds a ``python -m torch.distributed.run`` command line
(:func:`torchrun_command`, the line that ``--debug`` prints and the run's JSON records) and
:func:`relaunch` runs it. The same line pasted into a shell does the same thing, and so does
``torchrun --nproc-per-node N -m cosmos_cli generate ...``.

Failures: torchrun's agent stops every rank when one exits non-zero, then raises ``ChildFailedError``
with a screen of agent traceback that hides the cause. So each worker records its exception in the
JSON file torchrun assigns it (``TORCHELASTIC_ERROR_FILE``, torchelastic's own format plus our
fields), and :func:`relaunch` runs torchrun's entry point in this process, catches the
``ChildFailedError`` and picks the first recorded failure: the user sees one line that names the rank.
Other ranks usually fail a moment later with "connection closed by peer"; their records carry later
times, so they are never reported as the cause.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cosmos_cli import settings
from cosmos_cli.errors import BadInput, CosmosError, DistributedError, describe

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

TORCHRUN_MODULE = "torch.distributed.run"
LAUNCHED_ENV = settings.ENV_LAUNCHED
ERROR_FILE_ENV = settings.ENV_ERROR_FILE
NVLS_ENV = settings.ENV_NVLS
RDZV_BACKENDS = ("c10d", "static", "etcd", "etcd-v2")
MESSAGE_CHARS = 400


@dataclass(frozen=True)
class TorchrunEnv:
    """What torchrun tells each worker about its place in the job (its environment variables)."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> TorchrunEnv | None:
        """The worker's torchrun variables, or None when this process was not started by torchrun."""
        environ = settings.torchrun_environ(environ)
        if environ is None:
            return None
        try:
            world = int(environ["WORLD_SIZE"])
            return cls(
                rank=int(environ["RANK"]),
                world=world,
                local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])),
                local_world=int(environ.get("LOCAL_WORLD_SIZE", world)),
            )
        except ValueError as err:
            raise DistributedError(
                f"unreadable torchrun environment: {err}", "start the job with torchrun or cosmos-cli --gpus"
            ) from err


# ---- the command line ---------------------------------------------------------------------------
def torchrun_command(
    nproc: int,
    *,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_backend: str | None = None,
    argv: Sequence[str],
    target: Sequence[str] = ("-m", "cosmos_cli"),
) -> list[str]:
    """The ``python -m torch.distributed.run`` argv that runs ``target argv`` in ``nproc`` processes per node.

    One node without an endpoint uses ``--standalone`` (a private rendezvous on a free port). Several
    nodes need ``rdzv_endpoint`` (``host:port`` of node 0, the same on every node) and run the same
    command on each node with its own ``node_rank``; the backend defaults to ``c10d``, which needs no
    extra service. ``argv`` is passed through unchanged: workers see ``--gpus`` too and know from the
    torchrun environment not to launch again.
    """
    if nproc < 1:
        raise BadInput(f"--gpus {nproc} is not a number of processes", "use --gpus 1 or more")
    if nnodes < 1:
        raise BadInput(f"--nnodes {nnodes} is not a number of nodes", "use --nnodes 1 or more")
    if not 0 <= node_rank < nnodes:
        raise BadInput(f"--node-rank {node_rank} is outside 0..{nnodes - 1}", "number the nodes from 0")
    if rdzv_backend is not None and rdzv_backend not in RDZV_BACKENDS:
        raise BadInput(f"unknown --rdzv-backend {rdzv_backend!r}", f"use one of {', '.join(RDZV_BACKENDS)}")
    if nnodes > 1 and not rdzv_endpoint:
        raise BadInput(
            f"--nnodes {nnodes} needs a rendezvous address",
            "pass --rdzv-endpoint HOST:PORT of node 0, the same on every node",
        )
    if rdzv_endpoint:
        _check_endpoint(rdzv_endpoint)
    cmd = [sys.executable, "-m", TORCHRUN_MODULE]
    if nnodes == 1 and not rdzv_endpoint:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(nnodes), "--node-rank", str(node_rank)]
        cmd += ["--rdzv-backend", rdzv_backend or "c10d", "--rdzv-endpoint", rdzv_endpoint]
    cmd += ["--nproc-per-node", str(nproc), *target, *argv]
    return cmd


def _check_endpoint(endpoint: str) -> None:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--rdzv-endpoint {endpoint!r} is not HOST:PORT", "for example node0.cluster:29500")


def format_command(cmd: Sequence[str]) -> str:
    """The command as one shell-quoted line (what ``--debug`` prints and the run's JSON records)."""
    return shlex.join(cmd)


def should_relaunch(gpus: int, nnodes: int = 1) -> bool:
    """True when the options ask for several processes and this process is not already one of them."""
    return (gpus > 1 or nnodes > 1) and TorchrunEnv.from_environ() is None


# ---- the launcher side ----------------------------------------------------------------------------
def relaunch(cmd: Sequence[str], *, debug: bool = False) -> None:
    """Run a :func:`torchrun_command` line and wait for all ranks; raise one error if any rank fails.

    torchrun's entry point (``torch.distributed.run.run``, the same parser and agent as the
    ``python -m`` form) runs in this process, so a failure arrives as a ``ChildFailedError`` object
    instead of a traceback on stderr. Returns normally when every rank exits with 0.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    cmd = list(cmd)
    if cmd[:3] != [sys.executable, "-m", TORCHRUN_MODULE]:
        raise ValueError(f"not a torchrun command line: {format_command(cmd[:3])}")
    args = parse_args(cmd[3:])
    os.environ[LAUNCHED_ENV] = "1"
    os.environ[NVLS_ENV] = "0"  # the workers inherit it before any NCCL communicator exists
    nproc = int(args.nproc_per_node) if str(args.nproc_per_node).isdigit() else 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    if not debug:
        _quiet_agent_logs()
    try:
        run(args)
    except ChildFailedError as err:
        raise failure_error(err, debug=debug) from None
    except SignalException as err:  # the agent has stopped every rank; the caller says what is done
        from cosmos_cli.pipeline.interrupt import Interrupted

        raise Interrupted(err.sigval) from None


def _quiet_agent_logs() -> None:
    """Silence the agent's own warnings ("Sending process ... SIGTERM", "failed (exitcode: 1)"): the
    one-line error from :func:`failure_error` replaces them. ``--debug`` keeps them."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def failure_error(err: ChildFailedError, *, debug: bool = False) -> DistributedError:
    """The one error to show for a failed job: the earliest failure that a worker recorded.

    Ranks that the agent stopped with SIGTERM (because another rank failed) are never the cause. A rank
    that died without a record (killed, segfault) is reported by its exit code or signal.
    """
    recorded, unrecorded = [], []
    for rank, failure in err.failures.items():
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        info = data.get("cosmos")
        if isinstance(info, dict):
            recorded.append((float(info.get("time", failure.timestamp)), rank, failure, info))
        elif failure.signal_name() != "SIGTERM":
            unrecorded.append((float(failure.timestamp), rank, failure))
    if recorded:
        _, rank, failure, info = min(recorded, key=lambda item: item[:2])
        if debug and info.get("traceback"):
            from cosmos_cli.console import console

            console.print(f"rank {rank}: {info['traceback']}", highlight=False, markup=False)
        code = failure.exitcode if failure.exitcode > 0 else int(info.get("exit_code", 1))
        hint = None if info.get("user_error") else "the other ranks were stopped"
        hint = hint if hint is None or debug else f"{hint}; --debug shows its traceback"
        return DistributedError(f"rank {rank} failed: {info.get('message', '?')}", hint, exit_code=code)
    if unrecorded:
        _, rank, failure = min(unrecorded, key=lambda item: item[:2])
    else:
        rank, failure = err.get_first_failure()
    if failure.exitcode < 0:
        signal = failure.signal_name()
        hint = "often the host ran out of memory" if signal == "SIGKILL" else "its output above may say why"
        return DistributedError(f"rank {rank} was killed by {signal}", hint, exit_code=1)
    return DistributedError(
        f"rank {rank} exited with code {failure.exitcode}", "its output above may say why", exit_code=1
    )


# ---- the worker side ------------------------------------------------------------------------------
def record_failure(exc: BaseException, env: TorchrunEnv) -> None:
    """Record this rank's exception where the launcher finds it; say it on stderr when nobody else will.

    Writes torchelastic's error-file format (so plain ``torchrun`` shows it in its summary too) with a
    ``cosmos`` entry: rank, one-line message, exit code, and a sub-second time that orders the ranks'
    failures. Ranks other than 0 print one line unless :func:`relaunch` started them (rank 0's error
    goes through the CLI's own error line, since its console is the one that talks).
    """
    message = describe(exc)
    message = (message.strip().splitlines() or [type(exc).__name__])[0][:MESSAGE_CHARS]
    now = time.time()
    callstack = "".join(traceback.format_exception(exc))
    path = settings.error_file()
    if path:
        data = {
            "message": {
                "message": f"rank {env.rank}: {message}",
                "extraInfo": {"py_callstack": callstack, "timestamp": str(int(now))},
            },
            "cosmos": {
                "rank": env.rank,
                "local_rank": env.local_rank,
                "host": socket.gethostname(),
                "message": message,
                "exit_code": exc.exit_code if isinstance(exc, CosmosError) else 1,
                "user_error": isinstance(exc, CosmosError),
                "time": now,
                "traceback": callstack,
            },
        }
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fp:
            json.dump(data, fp)
        os.replace(tmp, path)
    if env.rank != 0 and not settings.launched_by_us():
        sys.stderr.write(f"error: rank {env.rank} failed: {message}\n")
        sys.stderr.flush()


@contextmanager
def worker_failures(env: TorchrunEnv | None) -> Iterator[None]:
    """Around a worker's whole job: an exception is recorded (:func:`record_failure`), then re-raised.

    Under :func:`relaunch` it becomes a quiet ``SystemExit`` with the error's exit code instead: the
    launcher prints the one line (and, with ``--debug``, the traceback) for whichever rank failed
    first, so neither the failing rank nor the ranks that fail in its wake print tracebacks of their own.
    """
    try:
        yield
    except Exception as exc:
        if env is None:
            raise
        record_failure(exc, env)
        if settings.launched_by_us():
            raise SystemExit(exc.exit_code if isinstance(exc, CosmosError) else 1) from None
        raise
