"""A tiny stand-in for the User Service's HTTP API, on 127.0.0.1, for the auth fallback.

Only ``GET /api/v1.0/users/me/api-key`` exists. ``answers`` maps an API key to
``(status, body)``; unknown keys get 401. Every key asked is recorded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/api/v1.0/users/me/api-key"


class UserServiceStub:
    """Start with :meth:`start`, stop with :meth:`stop` (also usable as a context manager)."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                key = self.headers.get("X-API-Key", "")
                with stub._lock:
                    stub.asked.append(key)
                status, body = (404, {"detail": "not found"}) if self.path != PATH else \
                    stub.answers.get(key, (401, {"detail": "Invalid API key"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, key: str) -> int:
        with self._lock:
            return self.asked.count(key)

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> "UserServiceStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and free the port (later requests are refused)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "UserServiceStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.is_running:
            self.stop()
