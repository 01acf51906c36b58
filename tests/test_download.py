"""`cosmos-cli download` against a real HTTP hub on 127.0.0.1 (tests/hub_server.py), run as a subprocess.

The CLI runs in a child process because huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_DISABLE_XET
when it is imported. Files are small and generated; the T5 folder holds a real tiny T5 so that loading it
with our text-encoder stage proves that `generate` finds what `download` wrote.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from cosmos_cli.checkpoints import CheckpointLayout
from cosmos_cli.errors import BadInput, DownloadError
from cosmos_cli.hub import download as hub_download
from cosmos_cli.hub.errors import HubContext, to_download_error
from cosmos_cli.hub.manifest import LLAMA_GUARD, T5, check_patterns, repos_for, select
from tests.hub_server import FakeHub, FakeRepo

REPO_ROOT = Path(__file__).resolve().parents[1]
AR_5B = "nvidia/Cosmos-1.0-Autoregressive-5B-Video2World"
AR_4B = "nvidia/Cosmos-1.0-Autoregressive-4B"
DV = "nvidia/Cosmos-1.0-Tokenizer-DV8x16x16"
CV = "nvidia/Cosmos-1.0-Tokenizer-CV8x8x8"
DD = "nvidia/Cosmos-1.0-Diffusion-7B-Decoder-DV8x16x16ToCV8x8x8"
GUARD = "nvidia/Cosmos-1.0-Guardrail"
SIGLIP = "google/siglip-so400m-patch14-384"
AEGIS = "nvidia/Aegis-AI-Content-Safety-LlamaGuard-Defensive-1.0"
LLAMA = "meta-llama/LlamaGuard-7b"
T5_REPO = "google-t5/t5-11b"

NEEDED = {
    AR_5B: ["model.pt", "config.json"],
    AR_4B: ["model.pt", "config.json"],
    DV: ["encoder.jit", "decoder.jit"],
    T5_REPO: ["config.json", "pytorch_model.bin", "tokenizer.json", "spiece.model", "generation_config.json"],
    DD: ["model.pt", "aux_vars.pt"],
    CV: ["encoder.jit", "decoder.jit", "mean_std.pt"],
    GUARD: [
        "blocklist/custom/custom.txt",
        "blocklist/nltk_data/corpora/wordnet/lexnames",
        "face_blur_filter/Resnet50_Final.pth",
        "video_content_safety_filter/safety_filter.pt",
    ],
    SIGLIP: [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "spiece.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ],
    AEGIS: ["adapter_config.json", "adapter_model.safetensors"],
    LLAMA: [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ],
}
"""What each repo must deliver, written out by hand (not derived from the presets table under test)."""
DECOYS = {
    AR_5B: ["README.md", "nemo/weights/__0_0.distcp"],
    AR_4B: ["README.md"],
    DV: ["autoencoder.jit", "README.md"],
    T5_REPO: ["tf_model.h5", "flax_model.msgpack", "rust_model.ot", "README.md"],
    DD: ["README.md"],
    CV: ["autoencoder.jit"],
    GUARD: ["README.md"],
    SIGLIP: ["README.md"],
    AEGIS: ["README.md"],
    LLAMA: ["pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json", "README.md"],
}
"""Files that are on the hub but must never be fetched (TensorFlow/Flax weights, the NeMo checkpoint, ...)."""
CACHE_LAYOUT = {
    SIGLIP: "Cosmos-1.0-Guardrail/video_content_safety_filter",
    AEGIS: "Cosmos-1.0-Guardrail/aegis",
}
CACHE_LAYOUT[LLAMA] = CACHE_LAYOUT[AEGIS]
FIVE_B = {AR_5B, DV, T5_REPO, DD, CV, GUARD, SIGLIP, AEGIS, LLAMA}
BIG = 12 * 2**20
"""Larger than huggingface_hub's 10 MiB download chunk, so a dropped connection leaves whole chunks behind."""

Run = namedtuple("Run", "code out err")


@pytest.fixture(scope="module")
def hub_content(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Every fake repo's files: random bytes, a real tiny T5 for google-t5/t5-11b, JSON where JSON is read."""
    from cosmos_cli.tiny.t5 import write_tiny_t5

    rng = random.Random(0)
    t5_root = tmp_path_factory.mktemp("tiny-t5")
    write_tiny_t5(t5_root)
    t5_files = {p.name: p.read_bytes() for p in (t5_root / T5_REPO).iterdir()}
    content: dict[str, dict[str, bytes]] = {}
    for repo, names in NEEDED.items():
        files = {}
        for name in names + DECOYS[repo]:
            if repo == T5_REPO and name in t5_files:
                files[name] = t5_files[name]
            elif name.endswith(".json"):
                files[name] = json.dumps({"repo": repo, "file": name}).encode()
            else:
                files[name] = rng.randbytes(rng.randint(50, 4000))
        content[repo] = files
    content[T5_REPO]["spiece.model"] = b"sentencepiece model stand-in"
    content[AR_4B]["model.pt"] = rng.randbytes(BIG)
    return content


def make_hub(content: dict[str, dict[str, bytes]], drop: set[str] = frozenset(), **kwargs) -> FakeHub:
    repos = {r: FakeRepo(r, dict(files), gated=(r == LLAMA)) for r, files in content.items() if r not in drop}
    return FakeHub(repos, **kwargs)


def cli(
    hub_endpoint: str, root: Path, *args: str, token: str | None = "hf_good", home: Path | None = None
) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=hub_endpoint,
        HF_HOME=str(home or root.parent / "hf-home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        COSMOS_CLI_NO_PROGRESS="1",
        COLUMNS="200",
    )
    if token:
        env["HF_TOKEN"] = token
    cmd = [sys.executable, "-m", "cosmos_cli", "download", "--checkpoint-dir", str(root), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


def fetched(hub: FakeHub) -> set[tuple[str, str]]:
    """(repo, file) of every file GET, parsed from '/{repo}/resolve/{commit}/{file}'."""
    out = set()
    for path in hub.downloads():
        repo, _, rest = path.lstrip("/").partition("/resolve/")
        out.add((repo, rest.partition("/")[2]))
    return out


def local_copy(root: Path, repo: str, name: str) -> Path | None:
    """Where a downloaded file is found the way its consumer looks it up."""
    if repo in CACHE_LAYOUT:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, name, cache_dir=root / CACHE_LAYOUT[repo])
        return Path(found) if isinstance(found, str) else None
    dest = {T5_REPO: T5_REPO}.get(repo, repo.split("/", 1)[1])
    path = root / dest / name
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def full_download(hub_content, tmp_path_factory):
    """One default run (5b-video2world, everything), then a second run on the same tree."""
    root = tmp_path_factory.mktemp("full") / "checkpoints"
    with make_hub(hub_content) as hub:
        first = cli(hub.endpoint, root)
        first_gets = fetched(hub)
        hub.log.clear()
        second = cli(hub.endpoint, root)
        second_log = list(hub.log)
    return root, first, first_gets, second, second_log


def test_default_preset_fetches_exactly_the_needed_files(full_download, hub_content):
    root, first, gets, _, _ = full_download
    assert first.code == 0, first.err
    expected = {(repo, name) for repo in FIVE_B for name in NEEDED[repo]}
    assert gets == expected
    for repo, name in expected:
        path = local_copy(root, repo, name)
        assert path is not None, f"{repo}/{name} is not where its consumer looks"
        assert path.read_bytes() == hub_content[repo][name]


def test_layout_is_what_generate_reads(full_download):
    from cosmos_cli.stages.text_encoder import TextEncoderStage

    root = full_download[0]
    layout = CheckpointLayout(root)
    assert layout.ar_weights.is_file() and layout.dv_encoder.is_file() and layout.dv_decoder.is_file()
    assert (layout.dd_dir / "model.pt").is_file() and (layout.cv_dir / "mean_std.pt").is_file()
    assert not (layout.t5_dir / "tf_model.h5").exists()
    stage = TextEncoderStage(layout.t5_dir)
    stage.load("cpu")
    embeddings, _ = stage.encode(["a robot arm picks up a cube"])
    assert embeddings.shape == (1, 512, 48)


def test_manifest_records_revision_size_and_sha256(full_download, hub_content):
    root = full_download[0]
    entries = json.loads((root / hub_download.MANIFEST_NAME).read_text())["files"]
    assert {(e["repo"], e["file"]) for e in entries} == {(r, n) for r in FIVE_B for n in NEEDED[r]}
    for entry in entries:
        data = hub_content[entry["repo"]][entry["file"]]
        assert entry["revision"] == "main" and len(entry["commit"]) == 40
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_second_run_does_nothing_and_says_so(full_download):
    _, _, _, second, log = full_download
    assert second.code == 0, second.err
    assert "nothing to do" in second.err
    assert not [entry for entry in log if "/resolve/" in entry.path]


def test_dropped_connection_resumes_from_where_it_stopped(hub_content, tmp_path):
    key = (AR_4B, "model.pt")
    with make_hub(hub_content, drop_after={key: 11 * 2**20}) as hub:
        run = cli(hub.endpoint, tmp_path / "ck", "4b", "--no-diffusion-decoder", "--no-guardrail")
        ranges = [e.range for e in hub.log if e.method == "GET" and e.path.endswith("/model.pt")]
    assert run.code == 0, run.err
    assert (tmp_path / "ck/Cosmos-1.0-Autoregressive-4B/model.pt").read_bytes() == hub_content[AR_4B][
        "model.pt"
    ]
    assert (
        ranges[0] is None and ranges[1] == f"bytes={10 * 2**20}-"
    )  # whole 10 MiB chunks kept, not refetched


def test_corrupted_file_is_deleted_named_and_fetched_again(hub_content, tmp_path):
    root = tmp_path / "ck"
    args = ("4b", "--no-diffusion-decoder", "--no-guardrail")
    with make_hub(hub_content, corrupt={(DV, "decoder.jit")}) as hub:
        bad = cli(hub.endpoint, root, *args)
        hub.corrupt.clear()
        hub.log.clear()
        good = cli(hub.endpoint, root, *args)
        refetched = fetched(hub)
    assert bad.code == 2
    assert "checksum mismatch" in bad.err and f"{DV}/decoder.jit" in bad.err
    assert len(bad.err.strip().splitlines()) == 1
    assert good.code == 0, good.err
    assert refetched == {(DV, "decoder.jit")}  # files verified before the failure are kept
    assert (root / "Cosmos-1.0-Tokenizer-DV8x16x16/decoder.jit").read_bytes() == hub_content[DV][
        "decoder.jit"
    ]


def test_file_already_on_disk_is_verified_instead_of_downloaded(hub_content, tmp_path):
    root = tmp_path / "ck"
    good = root / "Cosmos-1.0-Tokenizer-DV8x16x16/encoder.jit"
    stale = root / "Cosmos-1.0-Tokenizer-DV8x16x16/decoder.jit"
    good.parent.mkdir(parents=True)
    good.write_bytes(hub_content[DV]["encoder.jit"])  # e.g. from NVIDIA's own download script
    stale.write_bytes(bytes(len(hub_content[DV]["decoder.jit"])))  # right size, wrong bytes
    with make_hub(hub_content) as hub:
        run = cli(hub.endpoint, root, "4b", "--no-diffusion-decoder", "--no-guardrail")
    assert run.code == 0, run.err
    assert (DV, "encoder.jit") not in fetched(hub) and (DV, "decoder.jit") in fetched(hub)
    assert "verified 1 already on disk" in run.err
    assert stale.read_bytes() == hub_content[DV]["decoder.jit"]


def one_line_error(run: Run) -> str:
    assert run.code == 2, run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    return lines[0]


def test_gated_repo_without_token_says_how_to_set_hf_token(hub_content, tmp_path):
    with make_hub(hub_content) as hub:
        line = one_line_error(cli(hub.endpoint, tmp_path / "ck", token=None))
        files = fetched(hub)
    assert "meta-llama/LlamaGuard-7b" in line and "(401)" in line and "HF_TOKEN" in line
    assert not files  # access is checked before hours of other downloads


def test_licence_not_accepted_points_to_the_model_page(hub_content, tmp_path):
    with make_hub(hub_content) as hub:
        line = one_line_error(cli(hub.endpoint, tmp_path / "ck", token="hf_not_accepted"))
        page = f"{hub.endpoint}/meta-llama/LlamaGuard-7b"
    assert "licence not accepted" in line and "(403)" in line and page in line


def test_missing_repo_is_a_404_line(hub_content, tmp_path):
    with make_hub(hub_content, drop={CV}) as hub:
        line = one_line_error(cli(hub.endpoint, tmp_path / "ck"))
    assert f"repository {CV} not found" in line and "404" in line


def test_missing_file_is_named(hub_content, tmp_path):
    content = {**hub_content, DD: {k: v for k, v in hub_content[DD].items() if k != "aux_vars.pt"}}
    with make_hub(content) as hub:
        line = one_line_error(cli(hub.endpoint, tmp_path / "ck"))
    assert f"aux_vars.pt not found in {DD}" in line and "(404)" in line


def test_unknown_revision_is_a_404_line(hub_content, tmp_path):
    with make_hub(hub_content) as hub:
        line = one_line_error(cli(hub.endpoint, tmp_path / "ck", "--revision", f"{AR_5B}=no-such-branch"))
    assert "revision 'no-such-branch' not found" in line and AR_5B in line


def test_unreachable_endpoint_is_one_line(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the CLI runs: nothing listens there
    line = one_line_error(cli(f"http://127.0.0.1:{port}", tmp_path / "ck"))
    assert "cannot reach the Hugging Face Hub" in line and str(port) in line


def test_dry_run_lists_sizes_and_free_space_and_writes_nothing(hub_content, tmp_path):
    root = tmp_path / "ck"
    with make_hub(hub_content) as hub:
        run = cli(hub.endpoint, root, "--dry-run", token=None)
        files = fetched(hub)
    assert run.code == 0, run.err
    assert not root.exists() and not files
    assert "pytorch_model.bin" in run.out and "tf_model.h5" not in run.out
    assert "total:" in run.out and "free disk" in run.out
    assert "(401)" in run.err  # the gated repo's access problem is reported, not hidden


def test_include_and_exclude_globs(hub_content, tmp_path):
    with make_hub(hub_content) as hub:
        run = cli(
            hub.endpoint,
            tmp_path / "ck",
            "--no-diffusion-decoder",
            "--no-guardrail",
            "--exclude",
            "*.jit",
            "--include",
            "nemo/*",
            "--exclude",
            "*.bin",
        )
        files = fetched(hub)
    assert run.code == 0, run.err
    assert (AR_5B, "nemo/weights/__0_0.distcp") in files
    assert not [f for f in files if f[1].endswith((".jit", ".bin"))]


def test_bare_extension_is_rejected_with_the_glob_to_use():
    with pytest.raises(BadInput, match=r"use '\*\.pt'"):
        check_patterns([".pt"], "--include")


def test_not_enough_disk_space_stops_before_any_download(hub_content, tmp_path, monkeypatch):
    root = tmp_path / "ck"
    with make_hub(hub_content) as hub:
        plan = hub_download.make_plan(root, repos_for(["4b"], False, False), endpoint=hub.endpoint)
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(hub_download.shutil, "disk_usage", lambda p: usage._replace(free=1000))
        with pytest.raises(DownloadError, match="not enough disk space"):
            hub_download.execute(plan)
        assert not fetched(hub)
    assert not root.exists()


def test_disk_full_during_a_download_is_one_line():
    ctx = HubContext("https://huggingface.co", T5_REPO, "main", "pytorch_model.bin")
    err = OSError(errno.ENOSPC, "No space left on device", "/data/ck/google-t5/t5-11b/x.incomplete")
    mapped = to_download_error(err, ctx)
    assert mapped is not None and "disk full" in str(mapped) and "t5-11b/pytorch_model.bin" in str(mapped)


def test_alternatives_prefer_safetensors_and_never_take_tensorflow():
    llama = select(
        LLAMA_GUARD,
        [
            "config.json",
            "pytorch_model-00001-of-00002.bin",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ],
    )
    assert not llama.missing_required
    assert not [f for f in llama.files if f.endswith(".bin") or "bin.index" in f]
    t5 = select(T5, ["config.json", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "spiece.model"])
    assert t5.files == ["config.json", "pytorch_model.bin", "spiece.model"] and not t5.missing_required
    assert select(T5, ["config.json", "tf_model.h5", "spiece.model"]).missing_required


def test_token_saved_under_hf_home_is_used(hub_content, tmp_path):
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text("hf_good")  # what `hf auth login` writes under HF_HOME
    with make_hub(hub_content) as hub:
        run = cli(hub.endpoint, tmp_path / "ck", "--dry-run", token=None, home=home)
        probes = [e.authorization for e in hub.log if e.method == "HEAD" and e.path.startswith(f"/{LLAMA}/")]
    assert run.code == 0, run.err
    assert "(401)" not in run.err and probes == ["Bearer hf_good"]


def test_verify_rehashes_files_the_manifest_trusts(hub_content, tmp_path):
    root = tmp_path / "ck"
    args = ("4b", "--no-diffusion-decoder", "--no-guardrail")
    target = root / "Cosmos-1.0-Tokenizer-DV8x16x16/encoder.jit"
    with make_hub(hub_content) as hub:
        assert cli(hub.endpoint, root, *args).code == 0
        stat = target.stat()
        target.write_bytes(bytes(stat.st_size))  # silent corruption: same size, same mtime
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        hub.log.clear()
        trusting = cli(hub.endpoint, root, *args)
        checking = cli(hub.endpoint, root, *args, "--verify")
        refetched = fetched(hub)
    assert "nothing to do" in trusting.err
    assert checking.code == 0, checking.err
    assert refetched == {(DV, "encoder.jit")}
    assert target.read_bytes() == hub_content[DV]["encoder.jit"]


def test_not_found_on_a_gated_repo_means_no_token():
    import httpx2
    from huggingface_hub.errors import RepositoryNotFoundError

    response = httpx2.Response(
        401, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{LLAMA}")
    )
    err = RepositoryNotFoundError("401 Client Error", response=response)
    gated = to_download_error(err, HubContext("https://huggingface.co", LLAMA, "main", gated=True))
    plain = to_download_error(err, HubContext("https://huggingface.co", "nvidia/typo", "main"))
    assert "HF_TOKEN" in str(gated) and "(401)" in str(gated)
    assert "not found" in str(plain)


def test_file_in_hf_home_cache_is_copied_not_downloaded(hub_content, tmp_path):
    home = tmp_path / "hf-home"
    with make_hub(hub_content) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(home), HF_HUB_DISABLE_XET="1")
        populate = f"from huggingface_hub import hf_hub_download; hf_hub_download({DV!r}, 'encoder.jit')"
        subprocess.run([sys.executable, "-c", populate], env=env, check=True, timeout=60)
        hub.log.clear()
        run = cli(hub.endpoint, tmp_path / "ck", "4b", "--no-diffusion-decoder", "--no-guardrail", home=home)
        files = fetched(hub)
    assert run.code == 0, run.err
    assert (DV, "encoder.jit") not in files and (DV, "decoder.jit") in files
    assert (tmp_path / "ck/Cosmos-1.0-Tokenizer-DV8x16x16/encoder.jit").read_bytes() == hub_content[DV][
        "encoder.jit"
    ]


def test_a_link_to_a_file_outside_the_tree_is_replaced_not_followed(hub_content, tmp_path):
    outside = tmp_path / "nvidia-checkout-decoder.jit"
    outside.write_bytes(bytes(len(hub_content[DV]["decoder.jit"])))  # right size, wrong bytes
    link = tmp_path / "ck/Cosmos-1.0-Tokenizer-DV8x16x16/decoder.jit"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    with make_hub(hub_content) as hub:
        run = cli(hub.endpoint, tmp_path / "ck", "4b", "--no-diffusion-decoder", "--no-guardrail")
    assert run.code == 0, run.err
    assert outside.read_bytes() == bytes(len(hub_content[DV]["decoder.jit"]))  # the user's file is untouched
    assert not link.is_symlink() and link.read_bytes() == hub_content[DV]["decoder.jit"]
