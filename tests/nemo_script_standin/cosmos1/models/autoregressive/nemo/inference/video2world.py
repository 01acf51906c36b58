"""Stand-in for NVIDIA's NeMo ``video2world.py`` (tests only): same command line, same requirements.

See ``tests/nemo_script_standin/README.md``. Checks what NVIDIA's script needs and fails as it would,
prints its log lines, and writes a 33-frame 640x1024 mp4 where it would. Generates nothing real.
"""

import argparse
import json
import os
import sys
import time

import cosmos1  # noqa: F401  (needs the Cosmos root on sys.path: torchrun puts only this folder there)
import nemo  # noqa: F401  (ModuleNotFoundError outside the NeMo container, as NVIDIA's script)

HF_NAMES = ("nvidia/Cosmos-1.0-Autoregressive-5B-Video2World", "nvidia/Cosmos-1.0-Autoregressive-13B-Video2World")
SCRIPT = "cosmos1/models/autoregressive/nemo/inference/video2world.py"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Video2World generation (stand-in)")
    parser.add_argument("--input_type", type=str, default="video", choices=["image", "video"])
    parser.add_argument("--num_context_frames", type=int, default=33)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument("--tokenizer_compression_factor", type=str, default="8,16,16")
    parser.add_argument("--input_image_or_video_path", required=True, type=str)
    parser.add_argument("--prompt", type=str, default=None)
    parser.add_argument("--video_save_name", type=str, default="./nemo_generated_video.mp4")
    parser.add_argument("--ar_model_dir", type=str, default=HF_NAMES[0])
    parser.add_argument("--encoder_path", type=str, default="nvidia/Cosmos-1.0-Tokenizer-DV8x16x16")
    parser.add_argument("--decoder_path", type=str, default="nvidia/Cosmos-1.0-Tokenizer-DV8x16x16")
    parser.add_argument("--guardrail_dir", type=str, default="nvidia/Cosmos-1.0-Guardrail")
    parser.add_argument("--top_p", type=float, default=0.8)
    parser.add_argument("--temperature", type=int, default=1)  # NVIDIA's bug: an int
    parser.add_argument("--disable_diffusion_decoder", action="store_true")
    return parser.parse_args()


def check_attention_env() -> None:
    """megatron-core ``LanguageModule._set_attention_backend`` for AttnBackend.flash."""
    flash = os.environ.get("NVTE_FLASH_ATTN")
    assert flash in (None, "1"), f"NVTE_FLASH_ATTN set to {flash}, but expected 1 for attention backend type flash."
    for name in ("NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN"):
        value = os.environ.get(name)
        assert value in (None, "0"), f"{name} set to {value}, but expected 0 for attention backend type flash."
    os.environ.update(NVTE_FLASH_ATTN="1", NVTE_FUSED_ATTN="0", NVTE_UNFUSED_ATTN="0")


def main() -> None:
    started = os.environ.get("STANDIN_STARTED_FILE")
    if started:
        open(started, "w").close()
    args = parse_args()
    if "LOCAL_RANK" not in os.environ or os.environ.get("WORLD_SIZE") != "1":
        raise RuntimeError("not launched by torchrun --nproc-per-node=1")
    if not os.path.isfile(SCRIPT):
        raise FileNotFoundError(f"run from the Cosmos repository root (cwd is {os.getcwd()})")
    if "HF_HOME" not in os.environ:
        raise RuntimeError("HF_HOME is not set")
    if args.ar_model_dir not in HF_NAMES:
        for sub in ("context", "weights"):
            if not os.path.isdir(os.path.join(args.ar_model_dir, sub)):
                raise FileNotFoundError(f"{os.path.join(args.ar_model_dir, sub)} (not a NeMo checkpoint)")
    if not os.path.isfile(args.input_image_or_video_path):
        raise FileNotFoundError(args.input_image_or_video_path)
    seen = {k: os.environ.get(k) for k in ("NVTE_FLASH_ATTN", "NVTE_FUSED_ATTN", "NVTE_UNFUSED_ATTN", "HF_HOME")}
    print("standin-env: " + json.dumps(seen, sort_keys=True))
    print("standin-args: " + json.dumps(sys.argv[1:]))
    print(f"standin-pid: {os.getpid()}")
    check_attention_env()
    mode = os.environ.get("STANDIN_MODE", "")
    if mode == "fail":  # NeMo logs such lines and goes on: not the cause of a failure
        print("ImportError: apex is not installed, falling back (stand-in, not fatal)")
    tokens = 10240 if args.input_type == "image" else 7680
    print(f"Running Inference to generate {tokens} tokens. This will take some time.")
    wait_file = os.environ.get("STANDIN_WAIT_FILE")
    if wait_file:
        deadline = time.monotonic() + 30
        while not os.path.exists(wait_file):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{wait_file} never appeared: the log was not streamed")
            time.sleep(0.05)
        print("standin: the wait file appeared")
    if mode == "fail":
        raise RuntimeError("CUDA out of memory (stand-in failure)")
    print("Running diffusion model on the generated result")  # NVIDIA logs it with or without the DD
    if args.guardrail_dir:
        print("Running guardrails on the generated video")
        if mode == "block":
            raise ValueError("Guardrail blocked world generation.")
    if mode == "no_video":
        return
    frames_out = 20 if mode == "short_video" else 33
    import imageio
    import numpy as np

    frames = [np.full((args.height, args.width, 3), (7 * i) % 256, dtype=np.uint8) for i in range(frames_out)]
    imageio.mimsave(args.video_save_name, frames, fps=25)  # relative to the cwd; the parent is not created
    print(f"Saved to {args.video_save_name}")


if __name__ == "__main__":
    main()
