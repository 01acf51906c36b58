"""Two CPU ranks (gloo): a NeMo folder loaded with TP=2, and read by megatron-core's dist_checkpointing.

    python tests/dist_scripts/nemo_tp.py DIR     (DIR holds nemo/ and released/model.pt)

Launches itself under torchrun; each rank writes ``DIR/rank{r}.json`` for ``tests/test_nemo_checkpoint.py``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.nemo.dist_reader import DistCheckpoint
from cosmos_cli.nemo.state import NemoCheckpoint
from cosmos_cli.parallel.dist import distributed
from cosmos_cli.parallel.launch import TorchrunEnv, relaunch, torchrun_command
from cosmos_cli.parallel.tp import build_tp_model

CPU = torch.device("cpu")
SHARDED = ("linear_qkv.weight", "linear_proj.weight", "linear_fc1.weight", "linear_fc2.weight", "linear_q.weight",
           "linear_kv.weight", "word_embeddings.weight", "output_layer.weight")  # fmt: skip


@torch.no_grad()
def logits(model, args) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, args.output_rows, (2, 9), generator=gen)
    model.setup_caches(2, torch.float32, CPU)
    model.set_context(torch.randn(2, args.context_len, args.context_dim, generator=gen))
    return model(tokens, torch.arange(9), prefill=True)


def main() -> None:
    folder = Path(sys.argv[1])
    env = TorchrunEnv.from_environ()
    if env is None:
        relaunch(torchrun_command(2, argv=sys.argv[1:], target=[__file__]))
        return
    nemo, model_pt = folder / "nemo", folder / "released" / "model.pt"
    args = NemoCheckpoint(nemo).args
    read = {"sharded": 0}
    original = DistCheckpoint._read_chunk

    def counting(self, key, chunk, region):
        part = original(self, key, chunk, region)
        if key.endswith(SHARDED):
            read["sharded"] += part.numel() * part.element_size()
        return part

    DistCheckpoint._read_chunk = counting
    with distributed(tp=2, device_type="cpu") as ctx:
        tp_nemo = build_tp_model(args, weights=nemo / "weights", dtype=torch.float32, device=CPU, tp_group=ctx.tp_group)
        sharded_read = read["sharded"]
        tp_pt = build_tp_model(args, weights=model_pt, dtype=torch.float32, device=CPU, tp_group=ctx.tp_group)
        dense = build_model(args, weights=model_pt, dtype=torch.float32, device=CPU)
        a, b, c = logits(tp_nemo, args), logits(tp_pt, args), logits(dense, args)
        dist = DistCheckpoint(nemo / "weights")
        total = sum(dist.read(k).nbytes for k in dist.tensors if k.startswith("module.") and k.endswith(SHARDED))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from megatron.core import dist_checkpointing

            plain = dist_checkpointing.load_plain_tensors(str(nemo / "weights"))
        result = {
            "tp_equal_model_pt": bool(torch.equal(a, b)),
            "tp_vs_dense": float((a - c).abs().max()),
            "sharded_bytes_read": sharded_read,
            "sharded_bytes_total": total,
            "mcore_keys_equal": set(plain) == set(dist.tensors),
            "mcore_tensors_equal": all(torch.equal(plain[k], dist.read(k)) for k in dist.tensors),
        }
    (folder / f"rank{env.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
