"""Two CPU ranks where one raises while the other waits in a collective.

    python tests/dist_scripts/fail_rank.py FAIL_RANK KIND          # launches itself (relaunch)
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_scripts/fail_rank.py FAIL_RANK KIND

KIND is ``user`` (a CosmosError, exit 2) or ``bug`` (a RuntimeError). Both the launcher and the
workers handle errors the way ``cosmos_cli.cli.main`` does: a CosmosError becomes one line on stderr
and its exit code.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from cosmos_cli.errors import BadInput, CosmosError
from cosmos_cli.parallel.dist import distributed
from cosmos_cli.parallel.launch import TorchrunEnv, relaunch, torchrun_command


def work(fail_rank: int, kind: str) -> None:
    with distributed(tp=1, device_type="cpu") as ctx:
        if ctx.dims.rank == fail_rank:
            if kind == "user":
                raise BadInput("sample 3 has 5 input frames", "use 1 or 9 frames")
            raise RuntimeError("boom in the decoder")
        dist.all_reduce(torch.ones(4))  # the other rank never arrives


def main() -> int:
    fail_rank, kind = int(sys.argv[1]), sys.argv[2]
    try:
        if TorchrunEnv.from_environ() is None:
            relaunch(torchrun_command(2, argv=sys.argv[1:], target=[__file__]))
        else:
            work(fail_rank, kind)
    except CosmosError as err:
        if TorchrunEnv.from_environ() is None or dist.get_rank() == 0:
            sys.stderr.write(f"error: {err.one_line()}\n")
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
