"""One shared API key, sent as ``Authorization: Bearer <key>``.

The key comes from ``COSMOS_API_KEY`` or ``--api-key-file`` (the file wins: a flag given on purpose beats
an environment left over). Without a key the server answers anyone who can reach it, so it then refuses to
listen anywhere but the loopback interface.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cosmos_cli.errors import BadInput
from cosmos_cli.serve.errors import ApiError
from cosmos_cli.settings import ENV_API_KEY
from cosmos_cli.settings import api_key as api_key_from_env

_bearer = HTTPBearer(auto_error=False, description="The server's API key (COSMOS_API_KEY).")


def load_api_key(key_file: Path | None) -> str | None:
    """The configured key, or None when neither ``--api-key-file`` nor ``COSMOS_API_KEY`` gives one."""
    if key_file is not None:
        try:
            key = Path(key_file).read_text().strip()
        except OSError as err:
            raise BadInput(f"cannot read --api-key-file {key_file}: {err.strerror or err}", "check the path") from err
        if not key:
            raise BadInput(f"--api-key-file {key_file} is empty", "write the key on its first line")
        return key
    return api_key_from_env()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_key_for(host: str, api_key: str | None) -> None:
    """Refuse to expose an unauthenticated server beyond this machine."""
    if api_key is None and not is_loopback(host):
        raise BadInput(
            f"refusing to listen on {host} without an API key",
            f"set {ENV_API_KEY} or pass --api-key-file, or listen on --host 127.0.0.1",
        )


class BearerAuth:
    """FastAPI dependency: 401 without a bearer token, 403 with a wrong one, compared in constant time (no
    early exit at the first differing byte). Declared through ``HTTPBearer`` so ``/docs`` offers a key field."""

    def __init__(self, api_key: str | None):
        self._key = api_key.encode() if api_key else None

    def __call__(self, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if self._key is None:
            return
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), self._key):
            raise ApiError(403, "forbidden", "wrong API key")
