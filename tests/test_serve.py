"""`cosmos-cli serve` as a client sees it: a real server process, real HTTP on 127.0.0.1, tiny checkpoints.

One server (batch size 2, 1 MiB upload limit, the default pipeline: full guardrail and diffusion decoder)
serves most tests; the restart test runs its own, killed with SIGKILL mid-queue and started again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from cosmos_cli.cli import main
from cosmos_cli.io.video import read_mp4
from scripts.load_api import LocalServer
from scripts.load_api import main as load_api_main
from tests.conftest import TINY_AR_DIR, shared_path

PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."
KEY = "test-key-0123456789"
FINISHED = ("succeeded", "failed", "cancelled")


def serve_args(checkpoints: Path, *extra: str) -> list[str]:
    return ["--checkpoint-dir", str(checkpoints), "--ar-model-dir", TINY_AR_DIR, *extra]


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    shared_path("data", "clips")
    root = tmp_path_factory.mktemp("serve")
    args = serve_args(tiny_checkpoints, "--batch-size", "2", "--max-upload-mb", "1")
    with LocalServer(args, root / "jobs", KEY, root / "serve.log") as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c:
        yield c


def submit(client: httpx.Client, path: Path, name: str | None = None, **fields) -> httpx.Response:
    data = {"prompt": PROMPT, **{k: str(v) for k, v in fields.items()}}
    with open(path, "rb") as f:
        return client.post("/v1/generations", files={"file": (name or path.name, f)}, data=data)


def wait(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/generations/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def job_count(client: httpx.Client) -> int:
    return len(client.get("/v1/generations", params={"limit": 1000}).json()["generations"])


def test_health_needs_no_key_everything_else_does(server):
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    missing = httpx.get(f"{server.url}/readyz")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthorized"
    basic = httpx.get(f"{server.url}/v1/generations", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    wrong = httpx.get(f"{server.url}/v1/generations", headers={"Authorization": "Bearer test-key-0123456780"})
    assert wrong.status_code == 403
    assert wrong.json() == {"error": {"code": "forbidden", "message": "wrong API key"}}
    clip = shared_path("data", "clips", "input.mp4")
    with open(clip, "rb") as f:
        assert httpx.post(f"{server.url}/v1/generations", files={"file": f}, data={"prompt": "x"}).status_code == 401
    ready = httpx.get(f"{server.url}/readyz", headers=server.headers)
    assert ready.status_code == 200
    assert ready.json()["model"] == "cosmos-tiny-video2world"
    assert "/v1/generations" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_clip_to_33_frame_mp4(client, server, tmp_path):
    response = submit(client, shared_path("data", "clips", "input.mp4"))
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued"
    assert response.headers["location"] == f"/v1/generations/{created['id']}"
    job = wait(client, created["id"])
    assert job["status"] == "succeeded", job
    assert job["error"] is None and job["decoder"] == "diffusion_decoder"
    assert job["stage"] == "video_guardrail" and job["progress"] == {"done": 1, "total": 1}
    assert {"text_encoder", "ar_model", "diffusion_decoder", "queued_s", "run_s"} <= set(job["timings"])
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    video = client.get(f"/v1/generations/{created['id']}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(video.content)
    assert read_mp4(tmp_path / "out.mp4").shape == (33, 64, 96, 3)
    # a finished job cannot be cancelled; unknown ids are 404, all as JSON errors
    assert client.delete(f"/v1/generations/{created['id']}").json()["error"]["code"] == "conflict"
    assert client.get("/v1/generations/nope").status_code == 404
    assert client.get("/v1/generations/nope/video").json()["error"]["code"] == "not_found"


def test_oversized_upload_is_413_and_leaves_nothing(client, server, tmp_path):
    before, count = files_under(server.jobs_dir), job_count(client)
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 2**20))
    response = submit(client, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunked():  # no Content-Length: the limit must hold while reading
        yield b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
        for _ in range(3):
            yield bytes(2**20)
        yield b"\r\n--b--\r\n"

    response = client.post("/v1/generations", content=chunked(),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert response.status_code == 413
    assert files_under(server.jobs_dir) - {"jobs.sqlite3-wal", "jobs.sqlite3-shm"} <= before
    assert job_count(client) == count


def test_corrupt_video_is_422_with_the_cli_message(client, server, tmp_path, monkeypatch, capsys):
    before, count = files_under(server.jobs_dir), job_count(client)
    clip = shared_path("data", "clips", "input.mp4")
    (tmp_path / "broken.mp4").write_bytes(clip.read_bytes()[:20_000])
    response = submit(client, tmp_path / "broken.mp4")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    monkeypatch.chdir(tmp_path)
    assert main(["extract-frames", "broken.mp4", "-o", "frames.npy"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {error['message']}"
    assert (
        submit(client, tmp_path / "broken.mp4", name="notes.txt")
        .json()["error"]["message"]
        .startswith("notes.txt: unsupported file type '.txt'")
    )
    assert files_under(server.jobs_dir) - {"jobs.sqlite3-wal", "jobs.sqlite3-shm"} <= before
    assert job_count(client) == count


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "'prompt' is required"),
        ({"num_input_frames": 5}, "num_input_frames must be 1 or 9"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"seed": str(2**70)}, "seed must be in [0, 2**63)"),
        ({"temperature": "-1"}, "temperature must be 0 or more"),
        ({"steps": 3}, "unknown form field 'steps'"),
        ({"num_frames": 50}, "num_frames must be 33 + 24k (33, 57, 81, ..., 273), got 50"),
        ({"num_frames": 297}, "num_frames 297 is above the cap of 273 frames"),
    ],
)
def test_bad_fields_are_422(client, fields, message):
    response = submit(client, shared_path("data", "clips", "input.jpg"), **fields)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(message)


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_huge_image_uploads_are_422_without_decoding(client, server, tmp_path):
    from tests.test_bad_input import big_png

    png = big_png(tmp_path / "bomb.png", 9000)  # ~10 KB declaring 81 MP: 243 MB once decoded as RGB
    before = _peak_rss(server.process.pid)
    responses: list[httpx.Response | None] = [None] * 4

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as own:
            responses[i] = submit(own, png)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [422] * 4
    assert all("bomb.png: an image of 9000x9000 is too large" in r.json()["error"]["message"] for r in responses)
    assert _peak_rss(server.process.pid) - before < 100 * 2**20


def test_a_300_character_upload_name_is_accepted(client, server):
    name = "n" * 296 + ".jpg"
    response = submit(client, shared_path("data", "clips", "input.jpg"), name=name)
    assert response.status_code == 202, response.text
    job = wait(client, response.json()["id"])
    assert job["status"] == "succeeded" and job["params"]["filename"] == name


def test_num_frames_gives_a_longer_video(client, tmp_path):
    response = submit(client, shared_path("data", "clips", "input.mp4"), num_frames=57, seed=1)
    assert response.status_code == 202
    job = wait(client, response.json()["id"])
    assert job["status"] == "succeeded" and job["params"]["num_frames"] == 57
    (tmp_path / "long.mp4").write_bytes(client.get(f"/v1/generations/{job['id']}/video").content)
    assert read_mp4(tmp_path / "long.mp4").shape[0] == 57


def test_five_concurrent_submissions_each_get_their_own_video(client, server, tmp_path):
    clips = shared_path("data", "clips")
    inputs = [(clips / f"batch_inputs_{i}.mp4", {"seed": i}) for i in range(4)]
    inputs.append((clips / "input.jpg", {"seed": 4, "disable_diffusion_decoder": "true"}))
    responses: list[httpx.Response | None] = [None] * len(inputs)

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as own:
            responses[i] = submit(own, inputs[i][0], **inputs[i][1])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [202] * 5
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 5
    jobs = [wait(client, job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 5, jobs
    assert [j["decoder"] for j in jobs] == ["diffusion_decoder"] * 4 + ["dv_tokenizer"]
    assert [j["params"]["filename"] for j in jobs] == [path.name for path, _ in inputs]
    digests = set()
    for job_id in ids:
        (tmp_path / f"{job_id}.mp4").write_bytes(client.get(f"/v1/generations/{job_id}/video").content)
        assert read_mp4(tmp_path / f"{job_id}.mp4").shape[0] == 33
        digests.add(hashlib.sha256((tmp_path / f"{job_id}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 5
    listed = client.get("/v1/generations", params={"status": "succeeded"}).json()["generations"]
    assert set(ids) <= {j["id"] for j in listed} and {j["status"] for j in listed} == {"succeeded"}


def test_cancelled_job_never_produces_a_video(client, server):
    clip = shared_path("data", "clips", "input.mp4")
    job_id = submit(client, clip).json()["id"]
    cancelled = client.delete(f"/v1/generations/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait(client, submit(client, clip).json()["id"])  # the worker has moved past it
    assert client.get(f"/v1/generations/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/generations/{job_id}/video").status_code == 404
    assert not (server.jobs_dir / "results" / job_id).exists()


def test_cancelling_a_running_job_stops_it_without_output(client, server):
    clip = shared_path("data", "clips", "input.mp4")
    for _ in range(3):  # a tiny job runs ~1 s: polling every 10 ms catches it running at the first try
        job_id = submit(client, clip).json()["id"]
        while (status := client.get(f"/v1/generations/{job_id}").json()["status"]) == "queued":
            time.sleep(0.01)
        if status == "running":
            break
    else:
        pytest.fail("never caught a job running")
    cancelled = client.delete(f"/v1/generations/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait(client, submit(client, clip).json()["id"])  # the worker has finished with it
    assert client.get(f"/v1/generations/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/generations/{job_id}/video").status_code == 404
    assert not (server.jobs_dir / "results" / job_id).exists()
    assert f"job {job_id} cancelled while running" in server.log_tail(10_000)


def test_load_script_reports_throughput(server, monkeypatch, capsys):
    monkeypatch.setenv("COSMOS_API_KEY", KEY)
    clip = shared_path("data", "clips", "input.jpg")
    assert load_api_main(["--url", server.url, "--clients", "2", "--duration", "1", "--clip", str(clip)]) == 0
    report = capsys.readouterr().out
    assert "jobs/hour" in report and "0 submit errors" in report and "p99" in report


def test_restart_keeps_results_and_runs_queued_jobs(tiny_checkpoints, tmp_path):
    clips = shared_path("data", "clips")
    args = serve_args(tiny_checkpoints, "--guardrail", "blocklist")
    first = LocalServer(args, tmp_path / "jobs", KEY, tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=first.url, headers=first.headers, timeout=60) as c:
            done = submit(c, clips / "input.mp4").json()["id"]
            assert wait(c, done)["status"] == "succeeded"
            queued = [submit(c, clips / f"batch_inputs_{i}.mp4").json()["id"] for i in range(3)]
    finally:
        first.kill()
    with sqlite3.connect(tmp_path / "jobs" / "jobs.sqlite3") as db:
        statuses = dict(db.execute("SELECT id, status FROM jobs").fetchall())
    assert statuses[done] == "succeeded"
    assert {statuses[j] for j in queued} - {"succeeded"}, "every job finished before the kill: nothing to test"

    with LocalServer(args, tmp_path / "jobs", KEY, tmp_path / "serve.log") as second:
        with httpx.Client(base_url=second.url, headers=second.headers, timeout=60) as c:
            assert [wait(c, j)["status"] for j in queued] == ["succeeded"] * 3
            assert c.get(f"/v1/generations/{done}").json()["status"] == "succeeded"
            assert c.get(f"/v1/generations/{done}/video").status_code == 200
    assert "queued again" in second.log_tail(200)


def test_no_key_means_loopback_only(tiny_checkpoints, monkeypatch, capsys):
    monkeypatch.delenv("COSMOS_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", *serve_args(tiny_checkpoints)]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without an API key" in err and "Traceback" not in err


def test_busy_port_is_one_line(tiny_checkpoints, server, capsys):
    port = server.url.rsplit(":", 1)[1]
    assert main(["serve", "--port", port, "--jobs-dir", "unused", *serve_args(tiny_checkpoints)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_leftovers_of_a_crash_are_cleaned(tmp_path):
    from cosmos_cli.serve.jobs import JobParams, JobStore

    store = JobStore(tmp_path)
    (tmp_path / "incoming" / "abc").mkdir()
    (tmp_path / "incoming" / "abc" / "clip.mp4").write_bytes(b"half")
    (tmp_path / "uploads" / "orphan.mp4").write_bytes(b"no row")
    upload = tmp_path / "uploads" / "j1.mp4"
    upload.write_bytes(b"accepted")
    store.add("j1", JobParams(prompt="p"), upload)
    assert [j.id for j in store.claim(4)] == ["j1"]
    (tmp_path / "results" / "j1").mkdir()
    (tmp_path / "results" / "j1" / ".j1.mp4.partial-x").mkdir()
    store.close()

    store = JobStore(tmp_path)  # a new process after a crash
    recovery = store.recover()
    assert recovery.requeued == ["j1"] and recovery.removed_files == 3
    assert files_under(tmp_path) - {"jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"} == {"uploads/j1.mp4"}
    assert store.get("j1").status == "queued"
    for _ in range(2):  # a job that keeps killing the server is failed, not retried forever
        store.claim(1)
        store.recover()
    job = store.get("j1")
    assert job.status == "failed" and job.error_code == "interrupted"
    store.close()


def test_list_gives_the_most_recent_jobs_in_submission_order(tmp_path):
    from cosmos_cli.serve.jobs import JobParams, JobStore

    store = JobStore(tmp_path)
    for name in ("a", "b", "c"):
        (tmp_path / "uploads" / f"{name}.mp4").write_bytes(b"x")
        store.add(
            name, JobParams(prompt="p", disable_diffusion_decoder=name == "b"), tmp_path / "uploads" / f"{name}.mp4"
        )
    assert [j.id for j in store.recent(limit=2)] == ["b", "c"]
    assert [j.id for j in store.claim(3)] == ["a", "c"]  # one batch decodes one way; b waits for the next
    assert [j.id for j in store.recent("queued")] == ["b"]
    store.close()


def test_second_server_on_the_same_jobs_dir_refuses(tiny_checkpoints, server, client):
    import os
    import socket
    import subprocess
    import sys

    argv = [sys.executable, "-m", "cosmos_cli", "serve", "--port", "0", "--jobs-dir", str(server.jobs_dir),
            *serve_args(tiny_checkpoints)]  # fmt: skip
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert second.returncode == 2, second.stderr
    line = second.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"is in use by another server (pid {server.process.pid} on {socket.gethostname()}" in line
    assert "--jobs-dir" in line
    # the first server is untouched and still works
    job = wait(client, submit(client, shared_path("data", "clips", "input.jpg")).json()["id"])
    assert job["status"] == "succeeded"


def test_sigterm_puts_the_running_job_back_in_the_queue(tiny_checkpoints, tmp_path):
    clip = shared_path("data", "clips", "input.mp4")
    jobs = tmp_path / "jobs"
    running = LocalServer(serve_args(tiny_checkpoints), jobs, KEY, tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=running.url, headers=running.headers, timeout=60) as c:
            ids = [submit(c, clip).json()["id"] for _ in range(3)]
            deadline = time.monotonic() + 60
            while c.get(f"/v1/generations/{ids[0]}").json()["status"] == "queued" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert running.stop() in (0, -15)  # SIGTERM; uvicorn re-raises it after its graceful shutdown
    finally:
        if running.process.poll() is None:
            running.kill()
    with sqlite3.connect(jobs / "jobs.sqlite3") as db:
        rows = {r[0]: r[1:] for r in db.execute("SELECT id, status, attempts FROM jobs")}
    assert rows[ids[0]] == ("queued", 0), (rows, running.log_tail())  # stopped at a stage boundary, not lost
    assert {rows[i] for i in ids[1:]} == {("queued", 0)}
    assert not (jobs / "results" / ids[0]).exists()
    assert f"job(s) {ids[0]} queued again" in running.log_tail(50)
