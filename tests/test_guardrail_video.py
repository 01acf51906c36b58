"""The video stage: SigLIP + safety MLP verdicts, RetinaFace-R50 detection and pixelation, tiny stand-ins."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from cosmos_cli.errors import CheckpointMismatch, CosmosError, GuardrailBlocked
from cosmos_cli.guardrail.face_blur import load_retinaface, pixelate, pixelate_boxes
from cosmos_cli.guardrail.retinaface import RetinaFace, decode_boxes, nms, prior_boxes
from cosmos_cli.stages.guardrail import VideoGuardrailStage
from cosmos_cli.stages.standin_files.sizes import TINY_GUARDRAIL
from cosmos_cli.tiny.guardrail import write_guardrail_standins


def _frames(seed: int = 0, t: int = 3, h: int = 64, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def guardrail_dirs(tmp_path_factory):
    """Folders with the video parts; variants share the ~105 MB RetinaFace file of the first via a link."""
    base = write_guardrail_standins(
        tmp_path_factory.mktemp("video"), TINY_GUARDRAIL, parts=("video_filter", "face_blur")
    )
    dirs = {"safe": base}
    for name, kwargs in {
        "faces": dict(faces="everywhere", parts=("video_filter", "face_blur")),
        "unsafe": dict(video_verdict="unsafe", parts=("video_filter",)),
        "raise": dict(video_verdict="raise", parts=("video_filter",)),
    }.items():
        folder = write_guardrail_standins(tmp_path_factory.mktemp(name), TINY_GUARDRAIL, **kwargs)
        if not (folder / "face_blur_filter").exists():
            (folder / "face_blur_filter").symlink_to(base / "face_blur_filter")
        dirs[name] = folder
    return dirs


@pytest.fixture(scope="module")
def stages(guardrail_dirs):
    loaded = {}
    for name, folder in guardrail_dirs.items():
        stage = VideoGuardrailStage(folder, mode="full")
        stage.load("cpu")
        loaded[name] = stage
    return loaded


def test_safe_video_without_faces_is_returned_unchanged(stages):
    frames = _frames()
    out, faces = stages["safe"].run(frames)
    assert faces == 0
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, frames)
    assert len(stages["safe"].modules()) == 3


def test_detected_faces_are_pixelated_on_a_copy(stages):
    frames = _frames()
    before = frames.copy()
    out, faces = stages["faces"].run(frames)
    np.testing.assert_array_equal(frames, before)  # the caller's frames are untouched
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert faces >= len(frames)
    assert (out != frames).any(axis=-1).mean() > 0.5
    # Anchors of 256 and 512 pixels overhang a 64x96 frame on every side: clipped, not a crash.
    boxes = stages["faces"]._faces.detect(frames[:1])[0]
    assert (boxes[:, :2] < 0).any() and (boxes[:, 2] > 96).any()


def test_unsafe_video_is_blocked_with_exit_code_4(stages):
    with pytest.raises(GuardrailBlocked) as err:
        stages["unsafe"].run(_frames())
    assert err.value.exit_code == 4
    assert str(err.value) == (
        "guardrail blocked the video (video_content_safety_filter: frame 0 classified as Violence)"
    )


def test_a_crashing_classifier_fails_closed(stages):
    with pytest.raises(GuardrailBlocked) as err:
        stages["raise"].run(_frames())
    assert err.value.exit_code == 4
    assert str(err.value).startswith(
        "guardrail blocked the video (video_content_safety_filter: check failed: RuntimeError"
    )


def test_corrupted_classifier_file_is_a_load_error(guardrail_dirs, tmp_path):
    folder = write_guardrail_standins(tmp_path, TINY_GUARDRAIL, parts=("video_filter",))
    (folder / "face_blur_filter").symlink_to(guardrail_dirs["safe"] / "face_blur_filter")
    (folder / "video_content_safety_filter" / "safety_filter.pt").write_bytes(b"\0garbage")
    with pytest.raises(CheckpointMismatch, match="cannot load the guardrail video classifier"):
        VideoGuardrailStage(folder, mode="full").load("cpu")


@pytest.mark.parametrize("mode", ["blocklist", "off"])
def test_video_stage_is_skipped_outside_full_mode(tmp_path, mode):
    stage = VideoGuardrailStage(tmp_path / "no-such-folder", mode=mode)
    stage.load("cpu")
    frames = _frames()
    out, faces = stage.run(frames)
    assert out is frames and faces == 0 and stage.modules() == []


def test_run_rejects_frames_that_are_not_uint8_thwc(stages):
    with pytest.raises(ValueError):
        stages["safe"].run(np.zeros((2, 8, 8, 3), dtype=np.float32))


# --- pixelation and detection pieces ---


# Region sizes from the 20-pixel minimum to a whole 1024x640 frame; the numpy emulation of OpenCV's fixed-point
# resize that pixelate() used before differed from cv2 on regions like (25, 980) and (151, 805).
REGION_SIZES = [(20, 20), (23, 37), (41, 29), (100, 77), (257, 31), (25, 980), (151, 805), (640, 1024)]


def _nvidia_pixelate_face(region: np.ndarray) -> np.ndarray:
    """NVIDIA's ``pixelate_face`` as the guardrail spec writes it: 5x5 INTER_LINEAR, back up INTER_NEAREST."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless comes with the guardrail extra")
    h, w = region.shape[:2]
    small = cv2.resize(region, (5, 5), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@pytest.mark.parametrize("size", REGION_SIZES)
def test_pixelate_is_nvidias_opencv_recipe(size):
    h, w = size
    frame = np.random.default_rng(h * 10_000 + w).integers(0, 256, size=(640 + 7, 1024 + 5, 3), dtype=np.uint8)
    region = frame[3 : 3 + h, 2 : 2 + w]  # a strided view into a frame, as pixelate_boxes passes it
    before = region.copy()
    out = pixelate(region)
    np.testing.assert_array_equal(region, before)
    np.testing.assert_array_equal(out, _nvidia_pixelate_face(region))
    # 5x5 constant blocks: 5 runs of equal rows and of equal columns, each size/5 long to within a pixel
    # (OpenCV's nearest-neighbour map is floor(d * (5 / size)) in floating point: at size 980 a block may
    # start one pixel early), constant inside.
    row_runs = np.flatnonzero((out[1:] != out[:-1]).any(axis=(1, 2))) + 1
    col_runs = np.flatnonzero((out[:, 1:] != out[:, :-1]).any(axis=(0, 2))) + 1
    assert len(row_runs) == len(col_runs) == 4
    rows, cols = np.split(np.arange(h), row_runs), np.split(np.arange(w), col_runs)
    assert all(abs(len(r) - h / 5) < 2 for r in rows) and all(abs(len(c) - w / 5) < 2 for c in cols)
    for r in rows:
        for c in cols:
            block = out[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
            assert (block == block[0, 0]).all()


def test_pixelate_samples_bilinearly_rather_than_averaging():
    """Each block is the bilinear sample at its cell's centre (INTER_LINEAR), not the cell's mean (INTER_AREA):
    in a 50x50 region the first cell's centre (4.5, 4.5) lies amid pixels 4 and 5 of each axis."""
    region = np.zeros((50, 50, 3), dtype=np.uint8)
    region[4:6, 4:6] = 200
    out = pixelate(region)
    assert (out[:10, :10] == 200).all()  # a 10x10 mean would be 8
    assert not out[10:].any() and not out[:, 10:].any()


def test_pixelate_without_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    with pytest.raises(CosmosError) as err:
        pixelate(np.zeros((20, 20, 3), dtype=np.uint8))
    assert "opencv-python-headless" in str(err.value) and "pip install 'cosmos-ar-cli[guardrail]'" in str(err.value)


def test_pixelate_keeps_a_flat_region():
    flat = np.full((25, 31, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(pixelate(flat), flat)


def test_pixelate_boxes_changes_only_pixels_inside_the_boxes():
    frame = _frames(2, t=1)[0]
    original = frame.copy()
    count = pixelate_boxes(frame, np.array([[10.7, 5.2, 50.9, 40.0]]))
    assert count == 1
    changed = (frame != original).any(axis=-1)
    assert changed[5:40, 10:50].mean() > 0.9
    changed[5:40, 10:50] = False
    assert not changed.any()


def test_boxes_are_clipped_to_the_frame_before_the_size_test():
    frame = _frames(3, t=1)[0]
    original = frame.copy()
    boxes = np.array(
        [
            [200.0, 200.0, 260.0, 260.0],  # wholly outside: NVIDIA crashes in cv2.resize on the empty region
            [-50.0, 0.0, 10.0, 40.0],  # 60 px wide before clipping, 10 px after: skipped
            [-30.0, -30.0, 25.0, 25.0],  # 25x25 after clipping: pixelated
        ]
    )
    assert pixelate_boxes(frame, boxes) == 1
    changed = (frame != original).any(axis=-1)
    assert changed[:25, :25].mean() > 0.9
    changed[:25, :25] = False
    assert not changed.any()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor(
        [[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29], [0, 0, 9, 9.5]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.95, 0.8, 0.1])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    # inclusive areas: 10x10 boxes shifted by 5 overlap 50/150 = 0.33 <= 0.4, so both stay
    shifted = torch.tensor([[0, 0, 9, 9], [5, 0, 14, 9]], dtype=torch.float32)
    assert nms(shifted, torch.tensor([0.9, 0.8]), 0.4).tolist() == [0, 1]


def test_priors_match_the_network_output_and_decode_to_themselves():
    net = RetinaFace().eval()
    height, width = 60, 90  # not multiples of 32: feature maps round up
    with torch.inference_mode():
        offsets, scores, landmarks = net(torch.zeros(1, 3, height, width))
    priors = prior_boxes(height, width)
    assert offsets.shape == (1, len(priors), 4) and scores.shape == (1, len(priors), 2)
    assert landmarks.shape == (1, len(priors), 10)
    assert len(priors) == 2 * (8 * 12 + 4 * 6 + 2 * 3)
    boxes = decode_boxes(torch.zeros(1, len(priors), 4), priors)[0]
    # first anchor: 16 px square centred on the first stride-8 cell
    np.testing.assert_allclose(
        boxes[0] * torch.tensor([width, height, width, height]), [-4, -4, 12, 12], atol=1e-4
    )


def test_retinaface_uses_the_reference_parameter_names():
    keys = set(RetinaFace().state_dict())
    for key in (
        "body.conv1.weight",
        "body.layer1.0.downsample.0.weight",
        "body.layer4.2.bn3.running_var",
        "fpn.output1.0.weight",
        "fpn.merge2.1.bias",
        "ssh1.conv3X3.0.weight",
        "ssh3.conv7x7_3.1.running_mean",
        "ClassHead.0.conv1x1.weight",
        "BboxHead.2.conv1x1.bias",
        "LandmarkHead.1.conv1x1.weight",
    ):
        assert key in keys
    assert not any(k.startswith(("body.fc", "body.avgpool")) for k in keys)
    assert sum(t.numel() for t in RetinaFace().parameters()) == pytest.approx(27.29e6, rel=0.01)


def test_retinaface_checkpoint_with_dataparallel_prefix_loads(guardrail_dirs, tmp_path):
    state = torch.load(guardrail_dirs["safe"] / "face_blur_filter" / "Resnet50_Final.pth", weights_only=True)
    path = tmp_path / "Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    net = load_retinaface(path, torch.device("cpu"))
    torch.testing.assert_close(net.state_dict()["fpn.output1.0.weight"], state["fpn.output1.0.weight"])
    torch.save({"body.conv1.weight": state["body.conv1.weight"]}, path)
    with pytest.raises(CheckpointMismatch, match="not a RetinaFace-ResNet50 checkpoint"):
        load_retinaface(path, torch.device("cpu"))
