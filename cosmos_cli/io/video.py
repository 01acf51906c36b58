"""Video and image I/O: turn a clip or a picture into the uint8 frames the model takes, and write mp4s.

This is the one module that touches pixels on disk; ``extract-frames`` and ``generate`` both use it, so a
clip gives the same frames whichever command reads it.

Semantics follow the reference (NVIDIA Cosmos ``autoregressive/utils/inference.py``):

* video: the **last** ``num_frames`` consecutive decoded frames (or the ones ending at ``end_frame``);
* image: one frame (the reference forces ``num_input_frames=1`` for images);
* both: aspect-preserving resize that covers ``height x width`` (``s = max(W/w, H/h)``, size
  ``(ceil(s*h), ceil(s*w))``, bilinear with antialias), then a center crop with torchvision's rounding.
  PIL's BILINEAR on uint8 lands within ~0.1 grey level of torchvision's float resize; other filters don't.

Decoding streams through ffmpeg (imageio-ffmpeg) with a ring buffer of ``num_frames`` raw frames, so memory
does not grow with the clip's length. Frames are the ones a player shows: ffmpeg applies rotation metadata,
and images get their EXIF orientation (the reference ignores both; a sideways input is never what is meant).
"""

from __future__ import annotations

import collections
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_cli.errors import BadInput
from cosmos_cli.io.atomic import atomic_path, disk_full, nearly_full

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")

# One output frame per decoded frame, in presentation order, as torchvision.io.read_video returns them:
# ffmpeg's default for a raw pipe is constant frame rate, which would duplicate or drop frames of a
# variable-frame-rate clip and shift every index.
# ``-xerror``: stop at the first decode error instead of concealing it (a concealed error gives frames from
# the wrong place, or grey ones); the missing frames then show in the count check of read_video_window.
_DECODE_PARAMS = ["-fps_mode", "passthrough", "-an", "-sn", "-dn", "-xerror"]

MAX_SOURCE_SIDE = 8192
MAX_SOURCE_PIXELS = 40_000_000
"""Largest accepted input picture or video frame (8K UHD, 7680x4320, is 33 MP). Checked from the header,
before anything is decoded: a 236 KB PNG can declare 9000x9000 (243 MB as RGB), a video frame is held
``num_frames`` times in the ring buffer, and ``serve`` decodes uploads from strangers."""
MAX_OUTPUT_SIDE = 4096
"""Largest ``--height``/``--width`` (the models take 640x1024): the frames are held in memory."""
SIZE_LIMIT_HINT = f"at most {MAX_SOURCE_SIDE}x{MAX_SOURCE_SIDE} and {MAX_SOURCE_PIXELS // 10**6} MP; downscale it first"

ProgressFn = Callable[[int], None]
"""Called with the number of frames decoded since the last call (fits ``console.progress``'s advance)."""


@dataclass(frozen=True)
class VideoProbe:
    """What ffmpeg reports about a clip before decoding it (size after rotation)."""

    width: int
    height: int
    fps: float
    duration: float
    codec: str

    @property
    def frame_estimate(self) -> int | None:
        """``duration * fps``: good for a progress bar, not exact (the decoded count is authoritative)."""
        return round(self.duration * self.fps) if self.duration > 0 and self.fps > 0 else None


def input_kind(path: Path) -> str:
    """Check that ``path`` is a readable, non-empty video or image file; return ``"video"`` or ``"image"``."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a video or image", "pass one file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise BadInput(
            f"{path}: unsupported file type '{suffix or '(none)'}'",
            f"use a video ({', '.join(VIDEO_SUFFIXES)}) or an image ({', '.join(IMAGE_SUFFIXES)})",
        )
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadInput(f"{path}: cannot read it ({err.strerror})", "check the file's permissions") from err
    if size == 0:
        raise BadInput(f"{path} is empty (0 bytes)", "re-export or re-download the file")
    return "image" if suffix in IMAGE_SUFFIXES else "video"


class _QuietSizeWarning(logging.Filter):
    """imageio-ffmpeg warns whenever output size differs from stored size, i.e. for every rotated clip."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_QuietSizeWarning())


def check_source_size(path: Path, width: int, height: int, what: str) -> None:
    """Refuse a picture or frame above :data:`MAX_SOURCE_SIDE` / :data:`MAX_SOURCE_PIXELS` (from its header)."""
    if max(width, height) > MAX_SOURCE_SIDE or width * height > MAX_SOURCE_PIXELS:
        raise BadInput(f"{path}: {what} of {width}x{height} is too large", SIZE_LIMIT_HINT)


def check_output_size(height: int, width: int) -> None:
    """``--height``/``--width``: positive and at most :data:`MAX_OUTPUT_SIDE` (checked before decoding)."""
    if height < 1 or width < 1:
        raise BadInput(f"output size {height}x{width} is empty", "pass positive --height and --width")
    if max(height, width) > MAX_OUTPUT_SIDE:
        raise BadInput(
            f"output size {height}x{width} is too large",
            f"--height and --width are at most {MAX_OUTPUT_SIDE} (the models take 640x1024)",
        )


def _open_stream(path: Path) -> tuple[VideoProbe, Iterator[bytes]]:
    """Start ffmpeg on ``path``; return its metadata and the generator of raw rgb24 frames."""
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=list(_DECODE_PARAMS))
    try:
        meta = next(frames)
        width, height = meta["size"]
        probe = VideoProbe(width, height, float(meta["fps"]), float(meta["duration"]), str(meta["codec"]))
    except Exception as err:  # ffmpeg could not open it, or it has no video stream
        frames.close()
        raise BadInput(
            f"{path}: not a readable video (ffmpeg cannot decode it or finds no video stream)",
            "check that the file is complete and plays in a video player",
        ) from err
    if width <= 0 or height <= 0:
        frames.close()
        raise BadInput(f"{path}: video reports an empty frame size {width}x{height}", "re-encode the clip")
    try:
        check_source_size(path, width, height, "a video frame")
    except BadInput:
        frames.close()
        raise
    return probe, frames


@dataclass(frozen=True)
class StreamCheck:
    """What demuxing the video stream (no decoding) finds: its packet count and ffmpeg's error lines."""

    packets: int
    errors: list[str]


def check_stream(path: Path) -> StreamCheck:
    """Demux the first video stream without decoding (``-c copy``: the H.264/HEVC parser still checks
    each packet): fast, and it reports what a decode would otherwise conceal, such as a truncated file
    ("partial file") or overwritten bytes ("Invalid NAL unit size")."""
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    frames = [line for line in done.stdout.splitlines() if line.startswith("frame=")]
    packets = int(frames[-1].partition("=")[2] or 0) if frames else 0
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0 and not errors:
        errors = [f"ffmpeg exited with status {done.returncode}"]
    return StreamCheck(packets, errors)


def _corrupt(path: Path, decoded: int, expected: int, errors: list[str]) -> BadInput:
    cause = f"; ffmpeg: {errors[0].split('] ', 1)[-1]}" if errors else ""
    return BadInput(
        f"{path}: corrupt or truncated: decoded {decoded} of {expected} frames{cause}",
        "re-export or re-download the clip",
    )


def probe_video(path: Path) -> VideoProbe:
    """Size (after rotation), fps, duration and codec of a clip, without decoding its frames."""
    input_kind(path)
    probe, frames = _open_stream(Path(path))
    frames.close()
    return probe


@dataclass
class VideoWindow:
    """The raw frames read from a clip: ``frames[i]`` is decoded frame number ``indices[i]``."""

    probe: VideoProbe
    frames: list[np.ndarray]
    indices: list[int]
    frames_decoded: int
    reached_end: bool


def check_input_size(path: Path) -> None:
    """Refuse an input whose picture is too large from its header alone (PIL's size, ffmpeg's stream
    header), so ``generate`` fails before any model loads; :func:`load_model_input` checks again."""
    if input_kind(path) == "video":
        probe_video(path)  # checks the frame size in _open_stream
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_source_size(path, image.width, image.height, "an image")
    except Image.DecompressionBombError:
        read_image(path)  # raises the same one line as reading would
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # unreadable: read_image words it when the sample is read


def read_video_window(
    path: Path,
    num_frames: int,
    *,
    end_frame: int | None = None,
    on_progress: ProgressFn | None = None,
    buffer: collections.deque | None = None,
) -> VideoWindow:
    """Stream ``path`` and keep the last ``num_frames`` frames (those ending at ``end_frame`` if given).

    Only a ring buffer of ``num_frames`` raw frames is ever held, so a ten-minute clip costs the same memory
    as a two-second one. Decoding stops as soon as ``end_frame`` is reached. Returns fewer than
    ``num_frames`` frames when the clip (or the window up to ``end_frame``) is shorter; the caller decides
    whether that is an error. ``buffer`` lets a caller supply the ring (a ``deque`` with
    ``maxlen=num_frames``) to observe it.
    """
    path = Path(path)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    ring = buffer if buffer is not None else collections.deque(maxlen=num_frames)
    if ring.maxlen != num_frames:
        raise ValueError("the ring buffer's maxlen must equal num_frames")
    probe, frames = _open_stream(path)
    stream = check_stream(path)
    shape = (probe.height, probe.width, 3)
    decoded = 0
    pending = 0
    reached_end = True
    try:
        for raw in frames:
            ring.append((decoded, raw))
            decoded += 1
            pending += 1
            if on_progress is not None and pending >= 16:
                on_progress(pending)
                pending = 0
            if end_frame is not None and decoded > end_frame:
                reached_end = False
                break
    except RuntimeError as err:
        expected = max(stream.packets, probe.frame_estimate or 0)
        raise _corrupt(path, decoded, expected, stream.errors) from err
    finally:
        frames.close()
    if on_progress is not None and pending:
        on_progress(pending)
    # The container's own count (packets) must all decode; a damaged file never passes as a shorter clip.
    if stream.errors or (reached_end and decoded < stream.packets):
        expected = max(stream.packets, probe.frame_estimate or 0) if stream.errors else stream.packets
        raise _corrupt(path, decoded, expected, stream.errors)
    return VideoWindow(
        probe=probe,
        frames=[np.frombuffer(raw, dtype=np.uint8).reshape(shape) for _, raw in ring],
        indices=[index for index, _ in ring],
        frames_decoded=decoded,
        reached_end=reached_end,
    )


def read_image(path: Path) -> np.ndarray:
    """Read an image as uint8 RGB ``(H, W, 3)``, whatever its mode (RGBA, palette, grayscale, 16-bit).

    Alpha is dropped (the colour under it is kept). 16-bit grayscale is scaled to 8 bits: PIL's own
    ``convert("RGB")`` would clip every value above 255 to white.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():  # PIL's DecompressionBombWarning (> 89 MP): ours is the one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only: the size is known before any pixel
        with image:
            check_source_size(path, image.width, image.height, "an image")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                wide = np.asarray(image).astype(np.float64)
                grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except Image.DecompressionBombError as err:  # PIL's own limit (> 179 MP), raised while opening
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "more pixels than PIL allows"
        raise BadInput(f"{path}: an image of {size} is too large", SIZE_LIMIT_HINT) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadInput(
            f"{path}: not a readable image ({type(err).__name__}: {err})",
            "check that the file is complete and opens in an image viewer",
        ) from err


@dataclass(frozen=True)
class CropGeometry:
    """How a ``src_h x src_w`` frame becomes ``height x width``: resize to ``resized``, then crop."""

    resized_height: int
    resized_width: int
    top: int
    left: int

    def as_dict(self) -> dict[str, int]:
        return {
            "resized_height": self.resized_height,
            "resized_width": self.resized_width,
            "crop_top": self.top,
            "crop_left": self.left,
        }


def cover_crop_geometry(src_height: int, src_width: int, height: int, width: int) -> CropGeometry:
    """The reference's ``resize_input`` arithmetic, float for float.

    ``s = max(width/src_w, height/src_h)`` and ``ceil`` make the resized frame cover the target; the crop
    offsets use Python's ``round`` (banker's rounding) exactly as ``torchvision.transforms.functional.
    center_crop`` does, so odd margins split the same way.
    """
    scale = max(width / src_width, height / src_height)
    resized_h = int(math.ceil(scale * src_height))
    resized_w = int(math.ceil(scale * src_width))
    top = int(round((resized_h - height) / 2.0))
    left = int(round((resized_w - width) / 2.0))
    return CropGeometry(resized_h, resized_w, top, left)


def resize_center_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Aspect-preserving bilinear (antialiased) resize that covers ``height x width``, then center crop."""
    from PIL import Image

    geometry = cover_crop_geometry(frame.shape[0], frame.shape[1], height, width)
    image = Image.fromarray(frame)
    if image.size != (geometry.resized_width, geometry.resized_height):
        image = image.resize((geometry.resized_width, geometry.resized_height), Image.Resampling.BILINEAR)
    box = (geometry.left, geometry.top, geometry.left + width, geometry.top + height)
    return np.asarray(image.crop(box), dtype=np.uint8)


SHORT_CLIP_HINT = (
    "use a longer clip or a later --end-frame/--end-time, pass --num-frames 1, or pass --pad to repeat the last frame"
)
"""The fix for a clip shorter than the window, in ``extract-frames``' flags (callers pass their own)."""


def _frames_short_error(path: Path, have: int, need: int, end_frame: int | None, hint: str) -> BadInput:
    where = f"up to frame {end_frame}" if end_frame is not None else "in total"
    return BadInput(f"{path} has {have} frame{'s' if have != 1 else ''} {where}, fewer than the {need} needed", hint)


def load_model_input(
    path: Path,
    num_frames: int,
    height: int,
    width: int,
    *,
    pad: bool = False,
    end_frame: int | None = None,
    on_progress: ProgressFn | None = None,
    short_hint: str = SHORT_CLIP_HINT,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The model's input frames as uint8 ``(N, height, width, 3)`` (PIL bilinear), and their description.

    What ``extract-frames`` writes. ``generate`` resizes the same decoded frames as floats instead, as
    NVIDIA does (:func:`cosmos_cli.io.model_input.load_model_video`).
    """
    raw, info = read_input_frames(
        path, num_frames, height, width, pad=pad, end_frame=end_frame, on_progress=on_progress,
        short_hint=short_hint,
    )  # fmt: skip
    return np.stack([resize_center_crop(frame, height, width) for frame in raw]), info


def read_input_frames(
    path: Path,
    num_frames: int,
    height: int,
    width: int,
    *,
    pad: bool = False,
    end_frame: int | None = None,
    on_progress: ProgressFn | None = None,
    short_hint: str = SHORT_CLIP_HINT,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Decode the frames of a clip or an image that become the model's input, before any resize.

    Returns the source-size uint8 ``(H, W, 3)`` frames and a description (``height x width`` is the size
    they will be resized and cropped to).

    Videos give ``num_frames`` consecutive frames ending at the clip's last frame (or at ``end_frame``,
    0-based, inclusive). A window shorter than ``num_frames`` is a :class:`BadInput` unless ``pad``, which
    repeats the last frame as the reference does when it pads to 33 (``short_hint``: the fix to name, in the
    calling command's own flags). Images give exactly one frame
    (``info["kind"] == "image"``). Every unusable input raises :class:`BadInput` naming the file and the fix.

    ``info`` holds the source (path, kind, size, fps), the chosen source frame indices (padding repeats the
    last index), and the resize/crop geometry: what the ``extract-frames`` sidecar records.
    """
    path = Path(path)
    if num_frames < 1:
        raise BadInput(f"--num-frames must be at least 1, got {num_frames}", "use 1 or 9")
    check_output_size(height, width)
    if end_frame is not None and end_frame < 0:
        raise BadInput(f"--end-frame must be 0 or more, got {end_frame}", "frames are numbered from 0")
    kind = input_kind(path)
    info: dict[str, Any] = {"source": str(path.resolve()), "kind": kind}

    if kind == "image":
        if end_frame is not None:
            raise BadInput(f"{path} is an image; --end-frame/--end-time only apply to videos", "drop them")
        raw = [read_image(path)]
        indices = [0]
        padded = 0
        info.update(source_width=raw[0].shape[1], source_height=raw[0].shape[0], source_fps=None)
    else:
        window = read_video_window(path, num_frames, end_frame=end_frame, on_progress=on_progress)
        if end_frame is not None and window.reached_end and end_frame >= window.frames_decoded:
            raise BadInput(
                f"--end-frame {end_frame} is past the end of {path} ({window.frames_decoded} frames, "
                f"numbered 0-{window.frames_decoded - 1})",
                f"use an --end-frame below {window.frames_decoded}",
            )
        if not window.frames:
            raise BadInput(f"{path} contains no video frames", "check that the clip plays in a video player")
        raw, indices = window.frames, window.indices
        padded = 0
        if len(raw) < num_frames:
            if not pad:
                raise _frames_short_error(path, len(raw), num_frames, end_frame, short_hint)
            padded = num_frames - len(raw)
            raw = raw + [raw[-1]] * padded
            indices = indices + [indices[-1]] * padded
        info.update(
            source_width=window.probe.width,
            source_height=window.probe.height,
            source_fps=window.probe.fps or None,
            source_frames_decoded=window.frames_decoded,
            decoded_to_end=window.reached_end,
        )

    geometry = cover_crop_geometry(raw[0].shape[0], raw[0].shape[1], height, width)
    info.update(
        frame_indices=indices,
        padded_frames=padded,
        height=height,
        width=width,
        resize=geometry.as_dict(),
    )
    return raw, info


def check_mp4_size(path: Path, height: int, width: int) -> None:
    """H.264 in yuv420p subsamples chroma by 2, so both sides must be even (checked before any decoding)."""
    if height % 2 or width % 2:
        raise BadInput(
            f"cannot write {path}: H.264 (yuv420p) needs an even height and width, got {height}x{width}",
            "choose an even --height/--width, or write .npy or a PNG folder",
        )


DEFAULT_CRF = 23
"""libx264's own default, i.e. what NVIDIA's ``imageio.mimsave(path, frames, fps=25)`` writes: imageio's
legacy ffmpeg writer passes ``quality=None`` to imageio-ffmpeg, which then adds no ``-crf`` at all."""
CRF_RANGE = (0, 51)
"""libx264's constant rate factor for 8-bit video: 0 is lossless, 51 the worst; +6 roughly halves the size."""


def encode_mp4(frames: np.ndarray, path: Path, fps: float = 25, *, crf: int = DEFAULT_CRF) -> None:
    """Encode uint8 ``(T, H, W, 3)`` frames to ``path`` as H.264 (libx264, yuv420p); not atomic by itself.

    ``crf`` is passed to libx264 as is (``quality=None`` keeps imageio-ffmpeg from adding its own ``-crf``,
    which maps its 1-10 ``quality`` scale to CRF 25 at its default 5). No macro-block padding: the size is
    kept exactly.
    """
    import imageio_ffmpeg

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"encode_mp4 needs uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise ValueError(f"crf must be an integer in {CRF_RANGE[0]}..{CRF_RANGE[1]}, got {crf!r}")
    height, width = frames.shape[1:3]
    check_mp4_size(Path(path), height, width)
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,
        ffmpeg_log_level="error",
        # the container from the caller's intent, not the (temp) file name
        output_params=["-crf", str(crf), "-f", "mp4"],
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def write_mp4(
    frames: np.ndarray, path: Path, fps: float = 25, overwrite: bool = False, *, crf: int = DEFAULT_CRF
) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames as an H.264 mp4, atomically (see :func:`encode_mp4`).

    The mp4 is renamed to ``path`` only once it decodes back to ``T`` frames: imageio-ffmpeg does not report
    ffmpeg's exit status, and an ffmpeg that ran out of disk leaves a file without its index (unplayable).
    Out of disk is :class:`BadInput` "disk full at PATH". An existing ``path`` is refused unless
    ``overwrite``; on any failure nothing is left at ``path``.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim == 4:
        check_mp4_size(path, frames.shape[1], frames.shape[2])
    with atomic_path(path, overwrite) as temp:
        try:
            encode_mp4(frames, temp, fps, crf=crf)
            written = _frames_in(temp)
        except Exception as err:
            if nearly_full(temp.parent):
                raise disk_full(path) from err
            raise
        if written != len(frames):
            if nearly_full(temp.parent):
                raise disk_full(path)
            raise RuntimeError(f"ffmpeg wrote {written} of {len(frames)} frames for {path}")
    return path


def _frames_in(path: Path) -> int:
    """How many frames ``path`` decodes to (0 if ffmpeg cannot read it), one frame in memory at a time."""
    try:
        return read_video_window(path, 1).frames_decoded
    except BadInput:
        return 0


def read_mp4(path: Path) -> np.ndarray:
    """Every frame of a video as uint8 ``(T, H, W, 3)``: for tests and checks, not for long clips."""
    path = Path(path)
    probe, frames = _open_stream(path)
    try:
        shape = (probe.height, probe.width, 3)
        decoded = [np.frombuffer(raw, dtype=np.uint8).reshape(shape) for raw in frames]
    finally:
        frames.close()
    if not decoded:
        raise BadInput(f"{path} contains no video frames", "check that the clip plays in a video player")
    return np.stack(decoded)
