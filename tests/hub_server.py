"""A small Hugging Face Hub on 127.0.0.1 for download tests: the endpoints huggingface_hub 2.4 calls.

* ``GET /api/models/{repo}/revision/{rev}?blobs=true`` (``HfApi.model_info(files_metadata=True)``): the
  file list with size, git blob id and, for large (LFS) files, the sha256.
* ``HEAD|GET /{repo}/resolve/{rev}/{file}`` (``hf_hub_download`` / ``get_hf_file_metadata``): the file, with
  ``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` / ``X-Linked-Size`` for LFS files, ``Content-Length`` and
  ``Range`` support (206 + ``Content-Range``).

It never sends ``X-Xet-Hash`` or a xet ``Link``, so clients use plain HTTP. Errors carry ``X-Error-Code``
like the real hub (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``), which is what
huggingface_hub turns into its typed exceptions. Faults for tests: drop the connection after K bytes on the
first GET of a file, or serve a file whose bytes do not match its advertised sha256.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".pt", ".jit", ".bin", ".safetensors", ".pth", ".h5", ".msgpack", ".model")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False

    @property
    def commit(self) -> str:
        return hashlib.sha1(self.repo_id.encode()).hexdigest()

    @staticmethod
    def is_lfs(path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def sibling(self, path: str) -> dict:
        data = self.files[path]
        if not self.is_lfs(path):
            return {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        sha = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
        return {
            "rfilename": path,
            "size": len(data),
            "blobId": git_blob_id(pointer),
            "lfs": {"size": len(data), "sha256": sha, "pointerSize": len(pointer)},
        }


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo]
    allowed_tokens: set[str] = field(default_factory=lambda: {"hf_good"})
    drop_after: dict[tuple[str, str], int] = field(default_factory=dict)
    """(repo, file) -> bytes sent before the first GET of that file is cut."""
    corrupt: set[tuple[str, str]] = field(default_factory=set)
    log: list[Logged] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._gets: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                hub._handle(self, head=False)

            def do_HEAD(self):  # noqa: N802
                hub._handle(self, head=True)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def downloads(self) -> list[str]:
        """``repo/file`` of every GET on a resolve URL, in order."""
        return [entry.path for entry in self.log if entry.method == "GET" and "/resolve/" in entry.path]

    # ---- request handling ----------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlsplit(req.path).path)
        auth = req.headers.get("Authorization")
        with self._lock:
            self.log.append(Logged(req.command, path, req.headers.get("Range"), auth))
        if path.startswith("/api/models/"):
            self._model_info(req, path[len("/api/models/") :])
        elif "/resolve/" in path:
            self._resolve(req, path, auth, head)
        else:
            self._error(req, 404, "", "not a hub route")

    def _error(self, req, status: int, code: str, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        req.send_response(status)
        if code:
            req.send_header("X-Error-Code", code)
        req.send_header("X-Error-Message", message)
        if commit:
            req.send_header("X-Repo-Commit", commit)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def _repo_and_revision(self, req, repo_id: str, revision: str) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(req, 404, "RepoNotFound", "Repository not found")
            return None
        if revision not in ("main", repo.commit):
            self._error(req, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _model_info(self, req, rest: str) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        repo = self._repo_and_revision(req, repo_id, revision or "main")
        if repo is None:
            return
        body = json.dumps(
            {
                "id": repo.repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "siblings": [repo.sibling(p) for p in repo.files],
            }
        ).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _resolve(self, req, path: str, auth: str | None, head: bool) -> None:
        repo_id, _, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        repo = self._repo_and_revision(req, repo_id, revision)
        if repo is None:
            return
        if repo.gated:
            token = (auth or "").removeprefix("Bearer ").strip()
            if not token:
                msg = f"Access to model {repo_id} is restricted. You must be authenticated to access it."
                return self._error(req, 401, "GatedRepo", msg)
            if token not in self.allowed_tokens:
                msg = f"Access to model {repo_id} is restricted and you are not in the authorized list."
                return self._error(req, 403, "GatedRepo", msg)
        if filename not in repo.files:
            return self._error(req, 404, "EntryNotFound", "Entry not found", commit=repo.commit)
        self._send_file(req, repo, filename, head)

    def _send_file(self, req, repo: FakeRepo, filename: str, head: bool) -> None:
        data = repo.files[filename]
        sibling = repo.sibling(filename)
        key = (repo.repo_id, filename)
        if key in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start, status = 0, 200
        byte_range = req.headers.get("Range")
        if byte_range and not head:
            start = int(byte_range.removeprefix("bytes=").split("-")[0])
            status = 206
        req.send_response(status)
        req.send_header("X-Repo-Commit", repo.commit)
        req.send_header("Accept-Ranges", "bytes")
        req.send_header("Content-Type", "application/octet-stream")
        if "lfs" in sibling:
            req.send_header("ETag", f'"{sibling["lfs"]["sha256"]}"')
            req.send_header("X-Linked-Etag", f'"{sibling["lfs"]["sha256"]}"')
            req.send_header("X-Linked-Size", str(len(data)))
        else:
            req.send_header("ETag", f'"{sibling["blobId"]}"')
        if status == 206:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Content-Length", str(len(data) - start))
        req.end_headers()
        if head:
            return
        with self._lock:
            self._gets[key] = self._gets.get(key, 0) + 1
            first = self._gets[key] == 1
        body = data[start:]
        if first and key in self.drop_after:
            req.wfile.write(body[: self.drop_after[key]])  # then close: the client sees a short body
            req.wfile.flush()
            req.close_connection = True
            return
        req.wfile.write(body)
