"""The control API's client (what ``fastnet expose``, ``ports``, ``flows`` and ``stats`` use),
and where the API socket is by default.

Default API path, first that applies: ``$FASTNET_API``; ``/run/fastnet/api.sock`` for root;
``$XDG_RUNTIME_DIR/fastnet/api.sock``; ``/tmp/fastnet-UID/api.sock``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any


def default_api_path() -> str:
    env = os.environ.get("FASTNET_API")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/fastnet/api.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "fastnet", "api.sock")
    return f"/tmp/fastnet-{os.getuid()}/api.sock"


class ApiClientError(Exception):
    """The API answered with an error (``status``), or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ApiClient:
    def __init__(self, path: str | None = None, *, timeout: float = 15.0):
        self.path = path or default_api_path()
        self.timeout = timeout

    def request(self, method: str, route: str, body: Any = None) -> tuple[int, str, bytes]:
        """(status, content type, body); raises ApiClientError when the API cannot be reached."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, route, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        except (FileNotFoundError, ConnectionRefusedError):
            raise ApiClientError(f"no fastnet API at {self.path} (start it with `fastnet serve --api {self.path}`, "
                                 f"or give --api PATH)") from None
        except PermissionError:
            raise ApiClientError(f"permission denied on {self.path} (the API socket is its owner's only)") from None
        except (OSError, http.client.HTTPException) as e:
            raise ApiClientError(f"the API at {self.path} failed: {e}") from None
        finally:
            conn.close()

    def call(self, method: str, route: str, body: Any = None) -> Any:
        """The JSON answer; an error answer raises ApiClientError with the API's message."""
        status, ctype, data = self.request(method, route, body)
        if status >= 400:
            message = data.decode(errors="replace").strip()
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise ApiClientError(message, status)
        if "json" in ctype:
            return json.loads(data) if data.strip() else None
        return data.decode(errors="replace")
