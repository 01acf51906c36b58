"""The video stage: SigLIP + safety MLP verdicts, RetinaFace-R50 detection and pixelation, tiny stand-ins."""

# ruff: noqa: E501  (OpenCV reference values are long hex strings)

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmos_cli.errors import CheckpointMismatch, GuardrailBlocked
from cosmos_cli.guardrail.face_blur import load_retinaface, pixelate, pixelate_boxes
from cosmos_cli.guardrail.retinaface import RetinaFace, decode_boxes, nms, prior_boxes
from cosmos_cli.stages.guardrail import VideoGuardrailStage
from cosmos_cli.tiny.guardrail import TINY, write_guardrail_standins


def _frames(seed: int = 0, t: int = 3, h: int = 64, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def guardrail_dirs(tmp_path_factory):
    """Folders with the video parts; variants share the ~105 MB RetinaFace file of the first via a link."""
    base = write_guardrail_standins(
        tmp_path_factory.mktemp("video"), TINY, parts=("video_filter", "face_blur")
    )
    dirs = {"safe": base}
    for name, kwargs in {
        "faces": dict(faces="everywhere", parts=("video_filter", "face_blur")),
        "unsafe": dict(video_verdict="unsafe", parts=("video_filter",)),
        "raise": dict(video_verdict="raise", parts=("video_filter",)),
    }.items():
        folder = write_guardrail_standins(tmp_path_factory.mktemp(name), TINY, **kwargs)
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
    folder = write_guardrail_standins(tmp_path, TINY, parts=("video_filter",))
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


# cv2.resize(region, (5, 5), interpolation=cv2.INTER_LINEAR).tobytes().hex() with opencv-python-headless 5.0.0,
# for regions drawn in this order from np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8).
OPENCV_5X5 = [
    (
        (20, 20),
        "b06b5faa9c496f73619470886d6a8b418b71788f8e80b8628ca45a766b818f8b7f925b7ec8547a5f9d9e9a8e8a7b934ba231afe65d9fb0878fc0bade638c9f9b4379caa363a27065968577",
    ),
    (
        (23, 37),
        "a57554be7f536f1e6a10674b4527d22b61a0b16a4da64849b08a744e8a93d1b6a48c408057f75c7b7a686628378081a734a18f72558ecba2af962ea64c6d9c83b44c6031196e3957463092",
    ),
    (
        (41, 29),
        "a087ca4248ad7b74af39525a828c57e0c7cd71a557d07fd2bb6885484c8e6682f26f29cc8bbf1b59cbce299b77d164972a43b99a8d3f9838b9329b42c8b0225369b57f97cd5d3e72ae8f99",
    ),
    (
        (64, 48),
        "c18b42dddae087876fdd7b95e7b71c9673e74642539f77807171c2829f58bc9f79688d6c6a4f92415f802c90b371468839b23b7a705f87322e95665a4294318329403a465db0b736b883cd",
    ),
    (
        (100, 77),
        "3870b5a0547794877381899521b166a74e5237a18a73ca3474895b83305e4d87e069b482b9563f5a7d74af9835656d8952945f6895ed49869fc2577f5dad4f798d8674c35e468a9ab46d7d",
    ),
    (
        (257, 31),
        "3d7597d180603081dd9aa2c8a4927a97a95d83a9c75ba08d92588e7d86a4354292340d623eaff31eb8b3584683a8887a5a8e59f04c79d56d969ba08060af5cdc21b5c596cdaa7847765ca3",
    ),
]


def test_pixelate_matches_opencv():
    rng = np.random.default_rng(7)
    for (h, w), hex_values in OPENCV_5X5:
        region = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        small = np.frombuffer(bytes.fromhex(hex_values), dtype=np.uint8).reshape(5, 5, 3)
        # cv2.INTER_NEAREST back up: destination pixel d reads source floor(d * 5 / size)
        expected = small[(np.arange(h) * 5) // h][:, (np.arange(w) * 5) // w]
        np.testing.assert_array_equal(pixelate(region), expected)


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
