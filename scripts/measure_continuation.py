"""Which frames should feed the next chunk of a long video? Measures the two routes on the tiny checkpoints.

- pixels (the default, ``--num-frames``): the last 9 decoded output frames, re-encoded with the DV tokenizer;
- tokens (the alternative): the chunk's own last 2 latent frames (frames 17-24 and 25-32), no re-encode.

For every clip x seed x decoder it runs the first chunk through the pipeline's own stages, then reports
how many context tokens the two routes share (per latent frame) and the re-encode's time. Tiny random
weights say nothing about visual quality (and the tiny AR model's samples do not even depend on their
context); they do say whether the two routes hand the model the same tokens (they do not).
Run: ``python scripts/measure_continuation.py [--output FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY_AR_DIR = "Cosmos-1.0-Autoregressive-Tiny-Video2World"
PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."


def measure(checkpoints: Path, clips: list[Path], seeds: list[int]) -> list[dict]:
    from cosmos_cli.pipeline.long_video import context_from_latents, context_from_pixels
    from cosmos_cli.pipeline.pipeline import PipelineConfig, SampleResult, VideoPipeline
    from cosmos_cli.pipeline.samples import Sample

    rows = []
    for decoder in (False, True):
        config = PipelineConfig(checkpoints, TINY_AR_DIR, device="cpu", guardrail="off", diffusion_decoder=decoder)
        p = VideoPipeline(config)
        for clip in clips:
            for seed in seeds:
                sample = Sample(f"{clip.stem}_{seed}", PROMPT, clip, seed)
                results = {sample.name: SampleResult(sample.name)}
                events = lambda *a: None  # noqa: E731
                inputs = {sample.name: p._read_input(sample)}
                contexts = p._stage_text_encoder([sample], results, events)
                tokens = p._stage_tokenize([sample], inputs, results, events)
                generated = p._stage_ar([sample], tokens, contexts, results, events)
                frames = p._stage_decode([sample], generated, contexts, results, events)[sample.name]
                own = generated[sample.name]
                with p.placements.use(p.tokenizer) as stage:
                    start = time.perf_counter()
                    pixels = context_from_pixels(stage, frames)[0]
                    encode_s = time.perf_counter() - start
                latents = context_from_latents(own)
                agree = [float((pixels[i] == latents[i]).float().mean()) for i in range(2)]
                rows.append(
                    {
                        "clip": clip.name,
                        "seed": seed,
                        "decoder": "diffusion_decoder" if decoder else "dv_tokenizer",
                        "context_agreement_latent0": round(agree[0], 4),
                        "context_agreement_latent1": round(agree[1], 4),
                        "reencode_s": round(encode_s, 4),
                    }
                )
                print(json.dumps(rows[-1]))
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for decoder in sorted({r["decoder"] for r in rows}):
        part = [r for r in rows if r["decoder"] == decoder]
        out[decoder] = {
            key: round(sum(r[key] for r in part) / len(part), 4)
            for key in ("context_agreement_latent0", "context_agreement_latent1", "reencode_s")
        }
        out[decoder]["cases"] = len(part)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    a = parser.parse_args()
    from scripts.make_tiny_checkpoints import make_tiny_checkpoints

    clips_dir = a.shared / "data" / "clips"
    clips = [clips_dir / "input.mp4", clips_dir / "input.jpg", *sorted(clips_dir.glob("batch_inputs_*.mp4"))]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = make_tiny_checkpoints(Path(tmp) / "ckpt", guardrail=False)
        rows = measure(checkpoints, clips, list(range(a.seeds)))
    result = {"what": "pixel vs latent continuation, tiny checkpoints, CPU float32", "summary": summary(rows),
              "rows": rows, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    print("| decoder | cases | context latent 0 agree | context latent 1 agree | re-encode s |")
    print("|---|---|---|---|---|")
    for decoder, s in result["summary"].items():
        print(
            f"| {decoder} | {s['cases']} | {s['context_agreement_latent0']:.1%} | "
            f"{s['context_agreement_latent1']:.1%} | {s['reencode_s']:.3f} |"
        )
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
