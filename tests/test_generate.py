"""`cosmos-cli generate` end to end on the tiny checkpoints: real files, real ffmpeg, the whole pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cosmos_cli.cli import main
from cosmos_cli.io.video import read_mp4
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."


def generate(ckpt, *args: str) -> int:
    return main(["generate", "--checkpoint-dir", str(ckpt), "--ar-model-dir", TINY_AR_DIR, *args])


def test_single_clip_to_33_frame_mp4(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    out = tmp_path / "out"
    assert generate(tiny_checkpoints, "--input", str(clip), "--prompt", PROMPT, "--output-dir", str(out)) == 0
    video = read_mp4(out / "input" / "input.mp4")
    assert video.shape == (33, 64, 96, 3)
    record = json.loads((out / "input" / "generation.json").read_text())
    assert record["status"] == "succeeded"
    assert record["decoder"] == "diffusion_decoder"
    assert record["faces_pixelated"] == 0
    assert record["sample"]["prompt"] == PROMPT
    assert {"text_encoder", "tokenize", "ar_model", "diffusion_decoder"} <= set(record["timings_s"])


def test_nvidia_flag_names_and_dv_decoder_are_deterministic(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    runs = []
    for name in ("a", "b"):
        argv = ["--input_image_or_video_path", str(clip), "--prompt", PROMPT, "--video_save_folder", str(tmp_path),
                "--video_save_name", name, "--disable_diffusion_decoder", "--seed", "3"]  # fmt: skip
        assert generate(tiny_checkpoints, *argv) == 0
        record = json.loads((tmp_path / name / "generation.json").read_text())
        assert record["decoder"] == "dv_tokenizer"
        runs.append(read_mp4(tmp_path / name / f"{name}.mp4"))
    assert np.array_equal(runs[0], runs[1])  # same seed -> the same video
    argv = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(tmp_path), "--video-save-name", "c",
            "--disable-diffusion-decoder", "--seed", "4"]  # fmt: skip
    assert generate(tiny_checkpoints, *argv) == 0
    assert not np.array_equal(runs[0], read_mp4(tmp_path / "c" / "c.mp4"))


def test_image_input_gives_33_frames(tiny_checkpoints, tmp_path):
    image = shared_path("data", "clips", "input.jpg")
    argv = ["--input", str(image), "--prompt", PROMPT, "--output-dir", str(tmp_path), "--disable-diffusion-decoder"]
    assert generate(tiny_checkpoints, *argv) == 0
    assert read_mp4(tmp_path / "input" / "input.mp4").shape[0] == 33
    record = json.loads((tmp_path / "input" / "generation.json").read_text())
    assert record["sample"]["num_input_frames"] == 1


def test_batch_with_duplicate_basenames_and_resume(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(clips / "batch_inputs_0.mp4", tmp_path / "a" / "clip.mp4")
    shutil.copy(clips / "batch_inputs_1.mp4", tmp_path / "b" / "clip.mp4")
    lines = [{"prompt": PROMPT, "visual_input": "a/clip.mp4"}, {"prompt": PROMPT, "visual_input": "b/clip.mp4"},
             {"prompt": PROMPT, "visual_input": "missing.mp4"}]  # fmt: skip
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    argv = ["--batch-input", str(batch), "--output-dir", str(out), "--disable-diffusion-decoder", "--batch-size", "2"]
    assert generate(tiny_checkpoints, *argv) == 2  # the missing clip fails; the others are written
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["000_clip", "001_clip", "002_missing"]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["succeeded", "succeeded", "failed"]
    assert not list((out / "002_missing").glob("*.mp4"))
    first = (out / "000_clip" / "000_clip.mp4").stat().st_mtime_ns
    # An interrupted batch resumes: finished samples are skipped, the failed one is retried.
    batch.write_text("\n".join(json.dumps(line) for line in lines[:2]))
    assert generate(tiny_checkpoints, *argv) == 0
    assert (out / "000_clip" / "000_clip.mp4").stat().st_mtime_ns == first
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["skipped", "skipped"]


def test_guardrail_blocks_prompt_with_exit_3(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    argv = ["--input", str(clip), "--prompt", "a forbiddenword scene", "--output-dir", str(tmp_path)]
    assert generate(tiny_checkpoints, *argv) == 3
    assert not list(tmp_path.rglob("*.mp4"))
    record = json.loads((tmp_path / "input" / "generation.json").read_text())
    assert record["status"] == "blocked"
    assert record["error"].startswith("guardrail blocked the prompt (blocklist")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "x"], "exactly one of --input or --batch-input"),
        (["--input", "nope.mp4"], "--prompt is required"),
        (["--input", "nope.mp4", "--prompt", "x", "--placement", "ar_model=moon"], "bad --placement"),
    ],
)
def test_bad_arguments_are_one_line_errors(tiny_checkpoints, capsys, args, message):
    assert generate(tiny_checkpoints, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_checkpoint_names_the_file_and_download(tmp_path, capsys):
    clip = shared_path("data", "clips", "input.mp4")
    code = main(["generate", "--checkpoint-dir", str(tmp_path), "--input", str(clip), "--prompt", "x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "cosmos-cli download" in err


def test_batch_goes_on_past_a_blocked_prompt(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    lines = [{"prompt": "a forbiddenword scene", "visual_input": str(clips / "batch_inputs_0.mp4")},
             {"prompt": PROMPT, "visual_input": str(clips / "batch_inputs_1.mp4")}]  # fmt: skip
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    argv = ["--batch-input", str(batch), "--output-dir", str(out), "--disable-diffusion-decoder"]
    assert generate(tiny_checkpoints, *argv) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["blocked", "succeeded"]
    assert summary["samples"][0]["exit_code"] == 3
    assert [p.name for p in out.rglob("*.mp4")] == ["001_batch_inputs_1.mp4"]


def test_required_diffusion_decoder_missing_is_one_line(tiny_checkpoints, tmp_path, capsys):
    root = tmp_path / "ckpt"
    root.mkdir()
    for child in tiny_checkpoints.iterdir():
        if not child.name.startswith("Cosmos-1.0-Diffusion"):
            (root / child.name).symlink_to(child)
    clip = shared_path("data", "clips", "input.mp4")
    argv = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(tmp_path / "o"), "--diffusion-decoder"]
    assert generate(root, *argv) == 2
    err = capsys.readouterr().err
    assert "diffusion decoder" in err and "model.pt is missing" in err and "Traceback" not in err
    # without --diffusion-decoder the DV decoder is used and says so
    argv = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(tmp_path / "o")]
    assert generate(root, *argv) == 0
    assert json.loads((tmp_path / "o/input/generation.json").read_text())["decoder"] == "dv_tokenizer"


def test_dd_seed_fixes_the_decoder_noise_and_nvidia_spellings_run(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    videos = {}
    for name, dd_seed in (("a", "1"), ("b", "1"), ("c", "2")):
        argv = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(tmp_path), "--video-save-name", name,
                "--dd-seed", dd_seed, "--enforce-eager", "--offload_guardrail_models", "--temperature=0"]  # fmt: skip
        assert generate(tiny_checkpoints, *argv) == 0
        record = json.loads((tmp_path / name / "generation.json").read_text())
        assert record["decoder"] == "diffusion_decoder" and record["config"]["compile"] is False
        videos[name] = read_mp4(tmp_path / name / f"{name}.mp4")
    assert np.array_equal(videos["a"], videos["b"])  # greedy tokens, same decoder noise
    assert not np.array_equal(videos["a"], videos["c"])  # only the decoder's seed differs


def test_rerun_skips_only_the_same_request(tiny_checkpoints, tmp_path, capsys):
    clips = shared_path("data", "clips")
    clip = tmp_path / "clip.mp4"
    shutil.copy(clips / "batch_inputs_0.mp4", clip)
    out = tmp_path / "out"
    base = ["--input", str(clip), "--prompt", PROMPT, "--output-dir", str(out), "--disable-diffusion-decoder"]
    assert generate(tiny_checkpoints, *base, "--seed", "1") == 0
    video, record = out / "clip" / "clip.mp4", out / "clip" / "generation.json"
    first = (video.stat().st_mtime_ns, record.read_text())
    capsys.readouterr()
    assert generate(tiny_checkpoints, *base, "--seed", "1", "--batch-size", "2") == 0  # same request: skipped
    assert "already done" in capsys.readouterr().out
    for changed, says in [
        (["--seed", "2"], "seed 1 -> 2"),
        (["--seed", "1", "--temperature", "0.5"], "temperature 1.0 -> 0.5"),
        (["--seed", "1", "--top-p", "0.55"], "top_p"),
        (["--seed", "1", "--prompt", "another prompt"], "prompt"),
        (["--seed", "1", "--fps", "10"], "fps 25.0 -> 10.0"),
    ]:
        assert generate(tiny_checkpoints, *base, *changed) == 2, changed
        err = capsys.readouterr().err
        assert "holds a video made for another request" in err and says in err, err
        assert "--overwrite" in err and "--output-dir" in err and "Traceback" not in err
    shutil.copy(clips / "batch_inputs_1.mp4", clip)  # same name, other content
    assert generate(tiny_checkpoints, *base, "--seed", "1") == 2
    assert "input file content" in capsys.readouterr().err
    assert (video.stat().st_mtime_ns, record.read_text()) == first  # nothing was touched
    assert generate(tiny_checkpoints, *base, "--seed", "2", "--overwrite") == 0
    assert json.loads(record.read_text())["request"]["seed"] == 2


def test_batch_sample_for_another_request_fails_alone(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    lines = [{"prompt": PROMPT, "visual_input": str(clips / f"batch_inputs_{i}.mp4")} for i in range(2)]
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    argv = ["--batch-input", str(batch), "--output-dir", str(out), "--disable-diffusion-decoder"]
    assert generate(tiny_checkpoints, *argv) == 0
    lines[1]["seed"] = 7
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    assert generate(tiny_checkpoints, *argv) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["samples"]] == ["skipped", "failed"]
    assert "seed 0 -> 7" in summary["samples"][1]["error"] and summary["samples"][1]["exit_code"] == 2
    assert json.loads((out / "001_batch_inputs_1" / "generation.json").read_text())["request"]["seed"] == 0


def test_non_ascii_names_get_their_own_folders(tiny_checkpoints, tmp_path):
    from cosmos_cli.pipeline.samples import sample_name

    assert sample_name("clip one") == "clip_one" and sample_name("input") == "input"  # ASCII names as before
    assert sample_name("日本") != sample_name("中文")
    assert sample_name("日本").startswith("sample-") and sample_name("café").startswith("caf-")
    clips = shared_path("data", "clips")
    out = tmp_path / "out"
    folders = []
    for i, name in enumerate(("日本.mp4", "中文.mp4")):
        shutil.copy(clips / f"batch_inputs_{i}.mp4", tmp_path / name)
        argv = ["--input", str(tmp_path / name), "--prompt", PROMPT, "--output-dir", str(out),
                "--disable-diffusion-decoder"]  # fmt: skip
        assert generate(tiny_checkpoints, *argv) == 0
        folders.append(sample_name(name.removesuffix(".mp4")))
    assert sorted(p.name for p in out.iterdir()) == sorted(folders)
    for folder in folders:
        assert read_mp4(out / folder / f"{folder}.mp4").shape[0] == 33


def test_full_disk_is_exit_2_and_leaves_no_unplayable_file(tiny_checkpoints, tmp_path, capsys):
    from tests.small_fs import fill, small_tmpfs

    clips = shared_path("data", "clips")
    with small_tmpfs(tmp_path / "small", "4k") as disk:  # the tiny mp4 is ~5 KB, its failure record ~3 KB
        argv = ["--input", str(clips / "input.mp4"), "--prompt", PROMPT, "--output-dir", str(disk / "out"),
                "--disable-diffusion-decoder"]  # fmt: skip
        assert generate(tiny_checkpoints, *argv) == 2
        err = capsys.readouterr().err
        assert f"disk full at {disk / 'out' / 'input'}/" in err and "Traceback" not in err  # the mp4 or its record
        assert not list(disk.rglob("*.mp4")) and not list(disk.rglob("*.partial-*"))
        record = disk / "out/input/generation.json"
        assert not record.exists() or json.loads(record.read_text())["status"] == "failed"
        fill(disk)  # now not even the records fit
        batch = tmp_path / "batch.jsonl"
        batch.write_text(json.dumps({"prompt": PROMPT, "visual_input": str(clips / "batch_inputs_0.mp4")}))
        argv = ["--batch-input", str(batch), "--output-dir", str(disk / "b"), "--disable-diffusion-decoder"]
        assert generate(tiny_checkpoints, *argv) == 2
        assert f"disk full at {disk / 'b' / 'summary.json'}" in capsys.readouterr().err
        left = {str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file()}
        assert left <= {"filler", "out/input/generation.json"}, left  # nothing of the batch, no partials
