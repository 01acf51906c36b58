#!/usr/bin/env python3
"""Load test for ``cosmos-cli serve``: N concurrent clients for a bounded time, jobs/hour and latencies.

Each client submits a clip, polls its job to the end, and submits the next one until ``--duration`` is
over; jobs still running then get up to ``--drain`` seconds to finish and are cancelled after that.
Latency is submit -> succeeded as a client sees it (upload, validation, queueing, generation, polling).
Only loopback addresses are accepted as targets.

    # against a running server (the GPU box): COSMOS_API_KEY must match the server's
    python scripts/load_api.py --url http://127.0.0.1:8000 --clients 4 --duration 600

    # this script starts the server (and stops it): real checkpoints, or --tiny ones made on the fly
    python scripts/load_api.py --start-server --serve-arg=--checkpoint-dir=checkpoints --serve-arg=--batch-size=4 \
        --clients 8 --duration 300 --drain 240
    python scripts/load_api.py --tiny --clients 4 --duration 60 --serve-arg=--batch-size=2
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = (
    next((p for p in (REPO.parent / "shared", REPO / "shared") if (p / "data/clips/input.mp4").is_file()), REPO.parent)
    / "data/clips/input.mp4"
)
DEFAULT_PROMPT = "A video recorded from a moving vehicle's perspective, capturing roads and buildings."
TINY_AR_DIR = "Cosmos-1.0-Autoregressive-Tiny-Video2World"
FINISHED = ("succeeded", "failed", "cancelled")


class LocalServer:
    """``cosmos-cli serve`` in a subprocess on a free loopback port (``--port 0``; the port is read from its
    log), ready once ``/readyz`` answers 200. Used by this script's ``--start-server`` and by the tests."""

    def __init__(self, serve_args: list[str], jobs_dir: Path, api_key: str, log_path: Path):
        self.serve_args, self.jobs_dir, self.api_key, self.log_path = serve_args, jobs_dir, api_key, log_path
        self.process: subprocess.Popen | None = None
        self.url = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def start(self, timeout: float = 180.0) -> LocalServer:
        argv = [sys.executable, "-m", "cosmos_cli", "serve", "--host", "127.0.0.1", "--port", "0",
                "--jobs-dir", str(self.jobs_dir), *self.serve_args]  # fmt: skip
        env = dict(os.environ, COSMOS_API_KEY=self.api_key)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends
        self.url = ""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}:\n{self.log_tail()}")
            if not self.url:
                log_text = self.log_path.read_bytes()[offset:].decode(errors="replace")
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log_text)
                self.url = found.group(1) if found else ""
            elif httpx.get(f"{self.url}/readyz", headers=self.headers, timeout=5).status_code == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful: running jobs stop at a stage boundary), SIGKILL if that takes too long."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL: what a crash or an OOM killer does; nothing gets to clean up."""
        self.process.kill()
        return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    submit_latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_finish: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_client(url: str, headers: dict, clip: Path, prompt: str, seed: int, deadline: float, drain_until: float,
               poll_s: float, stats: Stats, start: float) -> None:  # fmt: skip
    """Submit, poll to the end, repeat until ``deadline``; cancel a job still running at ``drain_until``."""
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            with open(clip, "rb") as f:
                r = client.post("/v1/generations", files={"file": (clip.name, f)}, data={"prompt": prompt,
                                "seed": str(seed)})  # fmt: skip
            if r.status_code != 202:
                with stats.lock:
                    stats.errors.append(f"submit: {r.status_code} {r.text[:200]}")
                time.sleep(1)
                continue
            t_accepted = time.monotonic()
            job_id, status = r.json()["id"], "queued"
            seed += 1
            while status not in FINISHED:
                if time.monotonic() > drain_until:
                    status = client.delete(f"/v1/generations/{job_id}").json().get("status", "cancelled")
                    break
                time.sleep(poll_s)
                status = client.get(f"/v1/generations/{job_id}").json()["status"]
            t1 = time.monotonic()
            with stats.lock:
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                stats.submit_latencies.append(t_accepted - t0)
                if status == "succeeded":
                    stats.latencies.append(t1 - t0)
                    stats.last_finish = max(stats.last_finish, t1 - start)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load_test(url: str, api_key: str | None, clients: int, duration: float, drain: float, clip: Path,
              prompt: str, poll_s: float) -> str:  # fmt: skip
    """Run the clients and return the report (plain text, one fact a line)."""
    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"refusing to load-test {url}: only loopback targets (127.0.0.1, localhost, ::1)")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    ready = httpx.get(f"{url}/readyz", headers=headers, timeout=10)
    if ready.status_code != 200:
        raise SystemExit(f"{url}/readyz answered {ready.status_code}: {ready.text}")
    info = ready.json()
    stats = Stats()
    start = time.monotonic()
    deadline, drain_until = start + duration, start + duration + drain
    threads = [
        threading.Thread(target=run_client, args=(url, headers, clip, prompt, 1000 * i, deadline, drain_until,
                                                  poll_s, stats, start))
        for i in range(clients)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    done = len(stats.latencies)
    window = stats.last_finish or wall
    lat = stats.latencies
    others = [f"{n} {status}" for status, n in sorted(stats.statuses.items()) if status != "succeeded"]
    lines = [
        f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"server: {url} model={info.get('model')} device={info.get('device')} batch_size={info.get('batch_size')} "
        f"cosmos-cli {info.get('version')}",
        f"clients: {clients}, duration: {duration:g} s (+ up to {drain:g} s drain), wall: {wall:.1f} s",
        f"clip: {clip.name} ({clip.stat().st_size / 2**20:.2f} MiB)",
        "jobs: " + ", ".join([f"{done} succeeded", *others, f"{len(stats.errors)} submit errors"]),
        f"throughput: {done / window * 3600:.0f} jobs/hour ({done} in {window:.1f} s)",
        f"latency submit->succeeded (s): p50 {percentile(lat, 50):.2f}  p90 {percentile(lat, 90):.2f}  "
        f"p99 {percentile(lat, 99):.2f}  max {max(lat, default=float('nan')):.2f}",
        f"latency submit->202 (s): p50 {percentile(stats.submit_latencies, 50):.3f}  "
        f"p99 {percentile(stats.submit_latencies, 99):.3f}",
    ]  # fmt: skip
    lines += [f"error: {e}" for e in stats.errors[:5]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="A running server (loopback only).")
    parser.add_argument("--api-key", default=os.environ.get("COSMOS_API_KEY"), help="Default: $COSMOS_API_KEY.")
    parser.add_argument("--start-server", action="store_true", help="Start `cosmos-cli serve` (and stop it).")
    parser.add_argument("--tiny", action="store_true", help="--start-server on tiny checkpoints made here.")
    parser.add_argument("--serve-arg", action="append", default=[], help="A `serve` flag for --start-server.")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="Seconds to wait for model loading.")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds during which clients submit.")
    parser.add_argument("--drain", type=float, default=600.0, help="Seconds more for jobs already submitted.")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--poll", type=float, default=0.2, help="Seconds between status polls.")
    a = parser.parse_args(argv)
    if not a.clip.is_file():
        parser.error(f"--clip {a.clip} not found")
    if not (a.start_server or a.tiny):
        print(load_test(a.url, a.api_key, a.clients, a.duration, a.drain, a.clip, a.prompt, a.poll), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="cosmos-load-") as tmp:
        root = Path(tmp)
        args = list(a.serve_arg)
        if a.tiny:
            sys.path.insert(0, str(REPO))  # `python scripts/load_api.py` puts only scripts/ on the path
            from scripts.make_tiny_checkpoints import make_tiny_checkpoints

            checkpoints = make_tiny_checkpoints(root / "checkpoints")
            args = ["--checkpoint-dir", str(checkpoints), "--ar-model-dir", TINY_AR_DIR, *args]
        key = secrets.token_urlsafe(24)
        server = LocalServer(args, root / "jobs", key, root / "serve.log")
        try:
            server.start(timeout=a.ready_timeout)
            print(load_test(server.url, key, a.clients, a.duration, a.drain, a.clip, a.prompt, a.poll), flush=True)
        finally:
            server.stop()
            events = [line for line in server.log_tail(100_000).splitlines() if ' HTTP/1.1" ' not in line]
            shown = events if len(events) <= 25 else [*events[:20], "...", *events[-5:]]
            print("server log, requests left out:", *shown, sep="\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
