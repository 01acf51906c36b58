"""Two CPU ranks (gloo): TP=2 against the dense model on every golden set, then DP=2 over a JSONL batch.

    python tests/dist_scripts/tp_golden.py GOLDEN_DIR OUT_DIR

``GOLDEN_DIR`` is one set or a folder of sets. A set whose heads TP=2 cannot split (one KV head) is
recorded with the ``check_tp`` error it gets instead.

Not under torchrun, the script launches itself with ``relaunch(torchrun_command(2, ...))``, the path
``cosmos-cli generate --gpus 2`` takes. Each rank writes ``OUT_DIR/rank{r}.json`` with what it measured
(per set under ``sets``);
``tests/test_parallel_tp.py`` asserts on those numbers. The DP phase writes ``OUT_DIR/samples/{i}.json``
with exclusive creation, so a sample written twice fails the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from cosmos_cli.decode.generator import ARGenerator
from cosmos_cli.decode.sampling import SamplingParams
from cosmos_cli.errors import BadInput
from cosmos_cli.models.ar.weights import build_model
from cosmos_cli.models.config import ModelArgs
from cosmos_cli.parallel.data import shard_samples
from cosmos_cli.parallel.dist import (
    ParallelDims,
    broadcast_from_tp_leader,
    distributed,
    gather_objects,
    init_model_parallel,
)
from cosmos_cli.parallel.launch import TorchrunEnv, relaunch, torchrun_command
from cosmos_cli.parallel.tp import build_tp_model, check_tp

CPU = torch.device("cpu")
SAMPLED = SamplingParams(temperature=1.0, top_p=0.9)
GREEDY = SamplingParams(temperature=0.0)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def logits(model, prompt, context, greedy) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill logits over the prompt, then one-token decode logits along the golden greedy path."""
    batch, prompt_len = prompt.shape
    model.setup_caches(batch, torch.float32, CPU)
    model.bind_context(context, batch)
    prefill = model(prompt, torch.arange(prompt_len), prefill=True)
    steps = [model(greedy[:, i : i + 1], torch.tensor([prompt_len + i])) for i in range(greedy.shape[1] - 1)]
    return prefill, torch.cat(steps, dim=1)


def generate(model, prompt, context, n, params, seed) -> torch.Tensor:
    seeds = torch.full((prompt.shape[0],), seed, dtype=torch.long)
    return ARGenerator(model).generate(prompt, n, params, seeds, context=context)


def tp_phase(ctx, golden: Path) -> dict:
    config = json.loads((golden / "config.json").read_text())
    args = ModelArgs.from_json(config)
    try:
        check_tp(args, 2)
    except BadInput as e:
        return {"splittable": False, "error": str(e)}
    case = torch.load(golden / "case.pt", weights_only=False)
    leader = ctx.dims.writes_outputs
    # Only the TP leader holds the inputs; the other rank receives them (as the pipeline will).
    prompt = broadcast_from_tp_leader(case["prompt_tokens"] if leader else None, ctx)
    context = None  # base family: no text context to send
    if args.cross_attn_every_k_layers:
        context = broadcast_from_tp_leader(case["context"].float() if leader else None, ctx)
    greedy = case["greedy_tokens"]
    n_new = greedy.shape[1]

    dense = build_model(args, weights=golden / "model.pt", dtype=torch.float32, device=CPU)
    tp = build_tp_model(args, weights=golden / "model.pt", dtype=torch.float32, device=CPU, tp_group=ctx.tp_group)
    dense_prefill, dense_decode = logits(dense, prompt, context, greedy)
    tp_prefill, tp_decode = logits(tp, prompt, context, greedy)
    dense_sampled = generate(dense, prompt, context, 24, SAMPLED, 7)
    out = {
        "splittable": True,
        "n_heads": args.n_heads,
        "head_dim": args.head_dim,
        "n_kv_heads": args.n_kv_heads,
        "inputs_equal": bool(
            torch.equal(prompt, case["prompt_tokens"])
            and (context is None if case.get("context") is None else torch.equal(context, case["context"]))
        ),
        "prefill_vs_dense": max_diff(tp_prefill, dense_prefill),
        "decode_vs_dense": max_diff(tp_decode, dense_decode),
        "prefill_vs_golden": max_diff(tp_prefill, case["prefill_logits"]),
        "decode_vs_golden": max_diff(tp_decode, case["decode_logits"]),
        "atol": config["tolerance"]["atol"],
        "greedy_equal_golden": bool(torch.equal(generate(tp, prompt, context, n_new, GREEDY, 0), greedy)),
        "sampled": generate(tp, prompt, context, 24, SAMPLED, 7).tolist(),
        "dense_sampled": dense_sampled.tolist(),
        "local_params": sum(p.numel() for p in tp.parameters()),
        "dense_params": sum(p.numel() for p in dense.parameters()),
        "local_n_kv_heads": tp.layers[0].attention.n_kv_heads,
        "local_wq_rows": tp.layers[0].attention.wq.weight.shape[0],
        "local_cache_heads": tp.layers[0].attention.kv_cache.k.shape[1],
    }
    tp.fuse_projections()  # the fast decode path fuses the local shards
    fused_prefill, fused_decode = logits(tp, prompt, context, greedy)
    out["fused_vs_dense"] = max(max_diff(fused_prefill, dense_prefill), max_diff(fused_decode, dense_decode))
    out["fused_sampled"] = generate(tp, prompt, context, 24, SAMPLED, 7).tolist()
    # A whole decode step traces into one graph: no graph break, hence no host sync or untraceable call.
    step = torch.compile(lambda tok, pos: tp(tok, pos), fullgraph=True, backend="aot_eager")
    tok, pos = greedy[:, :1], torch.tensor([prompt.shape[1]])
    with torch.no_grad():
        out["compiled_vs_eager"] = max_diff(step(tok, pos), tp(tok, pos))
    return out


def dp_phase(ctx, batch: Path, out_dir: Path) -> dict:
    """TP=1, DP=2: each rank generates its share of the JSONL lines; every sample is written once."""
    dims = ParallelDims(ctx.dims.world, 1, ctx.dims.rank)
    tp_group, dp_group = init_model_parallel(dims)
    samples = [json.loads(line) for line in batch.read_text().splitlines() if line.strip()]
    mine = shard_samples(samples, dims.dp_rank, dims.dp)
    folder = out_dir / "samples"
    folder.mkdir(exist_ok=True)
    for index, sample in mine:
        if dims.writes_outputs:
            with open(folder / f"{index}.json", "x") as fp:  # "x": a second writer would fail here
                json.dump({"index": index, "prompt": sample["prompt"], "rank": dims.rank}, fp)
    indices = gather_objects([i for i, _ in mine], ctx)
    return {"dp_indices": indices, "tp_group_size": tp_group.size(), "dp_group_size": dp_group.size()}


def main() -> None:
    golden, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    env = TorchrunEnv.from_environ()
    if env is None:
        relaunch(torchrun_command(2, argv=sys.argv[1:], target=[__file__]))
        return
    with distributed(tp=2, device_type="cpu") as ctx:
        result = {"rank": ctx.dims.rank, "tp_rank": ctx.dims.tp_rank, "backend": ctx.backend}
        sets = [golden] if (golden / "config.json").exists() else sorted(p.parent for p in golden.glob("*/config.json"))
        result["sets"] = {folder.name: tp_phase(ctx, folder) for folder in sets}
        result.update(dp_phase(ctx, out_dir / "batch.jsonl", out_dir))
    (out_dir / f"rank{env.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
