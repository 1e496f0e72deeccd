"""A local HTTP server for the outbound guard's tests (the standard library's, in a thread, on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class LocalServer:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """``/ok`` answers 200; ``/to/<path>`` redirects (302) to ``<path>`` on the same host, and
    ``/away/<host>/<path>`` to ``<path>`` on another host (and port 80 for a host with no port of its own)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append({"path": self.path, "host": self.headers.get("Host")})
            if self.path == "/ok":
                self._answer(200, json.dumps({"ok": True}).encode(), {"Content-Type": "application/json"})
            elif self.path.startswith("/to/"):
                self._answer(302, b"", {"Location": "/" + self.path.removeprefix("/to/")})
            elif self.path.startswith("/away/"):
                host, _, rest = self.path.removeprefix("/away/").partition("/")
                self._answer(302, b"", {"Location": f"http://{host}/{rest}"})
            else:
                self._answer(404, b"", {})

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(port=server.server_port, requests=received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
