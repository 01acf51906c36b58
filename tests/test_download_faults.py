"""``download`` against faulty hubs and after killed runs (issue 16): a hub that accepts the connection and
never answers, an endpoint that answers with a web page, and ``.incomplete`` files a killed run left behind.

Real servers on 127.0.0.1 (a raw socket that never replies, an HTTP server that serves HTML, the fake hub of
``tests/hub_server.py``) and the real CLI in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cosmos_cli.checkpoints import AR_MODEL_DIRS
from tests.test_download import AR_4B, hub_content, make_hub  # noqa: F401 - hub_content is a fixture

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = ("4b", "--no-diffusion-decoder", "--no-guardrail")


def run_download(endpoint: str, root: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint, HF_HOME=str(root.parent / "hf-home"), HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_good",
        HF_HUB_DISABLE_TELEMETRY="1", COSMOS_CLI_NO_PROGRESS="1", COLUMNS="200", **env_extra,
    )  # fmt: skip
    cmd = [sys.executable, "-m", "cosmos_cli", "download", "--checkpoint-dir", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)


def test_hub_that_never_answers_times_out_in_one_line(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        run = run_download(f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "ck", *SMALL,
                           COSMOS_CLI_HUB_TIMEOUT="1")  # fmt: skip
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert accepted, "the CLI never connected"
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did not answer within 1 s" in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert elapsed < 60


class _HtmlHandler(BaseHTTPRequestHandler):
    def _page(self, head: bool) -> None:
        body = b"<!doctype html><html><body><h1>Welcome to our portal</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._page(head=False)

    def do_HEAD(self):  # noqa: N802
        self._page(head=True)

    def log_message(self, *args):
        pass


def test_endpoint_that_answers_html_is_one_clear_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = run_download(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "ck", *SMALL)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "answered with a web page" in lines[0] and "HF_ENDPOINT" in lines[0], run.stderr


def test_partial_files_of_a_killed_run_are_removed(hub_content, tmp_path):  # noqa: F811
    root = tmp_path / "ck"
    leftovers = root / AR_MODEL_DIRS["4b"] / ".cache" / "huggingface" / "download"
    leftovers.mkdir(parents=True)
    stale = leftovers / "model.pt.0123abcd.deadbeef.incomplete"
    stale.write_bytes(os.urandom(2**20))
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = leftovers / "other.cafe.incomplete"  # a download running right now: left alone
    fresh.write_bytes(b"x" * 100)
    with make_hub(hub_content) as hub:
        run = run_download(hub.endpoint, root, *SMALL)
    assert run.returncode == 0, run.stderr
    assert not stale.exists()
    assert fresh.exists()
    assert "removed 1.0 MB of partial files left by an interrupted run" in run.stderr, run.stderr
    assert set(root.rglob("*.incomplete")) == {fresh}
