"""`cosmos-cli extract-frames`: a clip or an image in, exactly the frames the model takes out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmos_cli.commands.options import OverwriteOpt
from cosmos_cli.errors import BadInput

SUPPORTED_NUM_FRAMES = (1, 9)
"""The reference's ``_SUPPORTED_CONTEXT_LEN``: 9 context frames (video2world) or 1 (image-like)."""


def command(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A video (.mp4 .mov .m4v .mkv .webm .avi) or an image (.jpg .jpeg .png .webp .bmp).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: NAME.mp4 (H.264), NAME.npy (uint8 T x H x W x 3) or a folder name "
            "(one PNG per frame). A sidecar NAME.json describes the extraction.",
            show_default=False,
        ),
    ],
    num_frames: Annotated[
        int, typer.Option("--num-frames", "-n", help="Consecutive frames to keep from a video: 9 or 1.")
    ] = 9,
    end_frame: Annotated[
        int | None,
        typer.Option(
            "--end-frame",
            help="Last frame of the window (0-based, inclusive). Default: the clip's last frame.",
            show_default=False,
        ),
    ] = None,
    end_time: Annotated[
        float | None,
        typer.Option(
            "--end-time",
            help="End the window at this time (seconds): its last frame is the one on screen just before.",
            show_default=False,
        ),
    ] = None,
    pad: Annotated[
        bool,
        typer.Option(
            "--pad",
            help="If the clip is shorter than --num-frames, repeat its last frame instead of failing.",
        ),
    ] = False,
    height: Annotated[int, typer.Option("--height", help="Output height in pixels.")] = 640,
    width: Annotated[int, typer.Option("--width", help="Output width in pixels.")] = 1024,
    overwrite: OverwriteOpt = False,
) -> None:
    """Turn a clip or an image into the frames Cosmos Video2World takes as input.

    A video gives its LAST --num-frames consecutive frames (or the ones ending at
    --end-frame / --end-time); an image gives one frame. Every frame is resized,
    keeping its aspect ratio, until it covers --height x --width (bilinear,
    antialiased), then center-cropped to exactly that size, as NVIDIA's reference
    does. Clips are streamed: memory stays flat however long they are.

    Examples:

      cosmos-cli extract-frames clip.mp4 -o frames.npy

      cosmos-cli extract-frames clip.mp4 -o context.mp4 --end-time 4.5

      cosmos-cli extract-frames photo.jpg -o still    (a folder of PNGs)
    """
    from cosmos_cli.console import info, progress, stdout
    from cosmos_cli.io.frames import plan_extract, run_extract
    from cosmos_cli.io.video import check_output_size

    check_output_size(height, width)
    if num_frames not in SUPPORTED_NUM_FRAMES:
        raise BadInput(f"--num-frames {num_frames} is not supported", "use 9 (the default) or 1, as the model does")
    plan = plan_extract(
        source,
        output,
        num_frames=num_frames,
        height=height,
        width=width,
        pad=pad,
        end_frame=end_frame,
        end_time=end_time,
        overwrite=overwrite,
    )
    if plan.kind == "video":
        with progress(f"Decoding {source.name}", total=plan.frames_to_decode, unit="frames") as advance:
            result = run_extract(plan, on_progress=advance)
    else:
        result = run_extract(plan)

    meta = result.sidecar
    indices = meta["frame_indices"]
    window = f"frame {indices[0]}" if len(indices) == 1 else f"frames {indices[0]}-{indices[-1]}"
    padded = f", last one repeated {meta['padded_frames']}x" if meta["padded_frames"] else ""
    info(
        f"{meta['kind']} {meta['source_width']}x{meta['source_height']} -> {len(indices)} x "
        f"{meta['height']}x{meta['width']} ({window}{padded}); sidecar {result.sidecar_path}"
    )
    stdout.print(str(result.output), highlight=False, soft_wrap=True)
