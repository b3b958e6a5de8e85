"""Redis servers that misbehave, on loopback: one that stalls, one that drips.

* :class:`StallingRedis` accepts connections and reads what it is sent, but
  never answers (a Redis frozen by a long command, or a black hole);
* :class:`DrippingRedis` answers every command with a large bulk string, one
  byte every ``interval`` seconds: each read gets data well within any
  per-read timeout, so only a deadline on the whole call ends it.
"""

from __future__ import annotations

import socket
import threading


class _FakeServer:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._clients: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for client in self._clients:
            try:
                client.close()
            except OSError:
                pass

    def __enter__(self) -> "_FakeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StallingRedis(_FakeServer):
    """Reads everything, answers nothing."""

    def _serve(self, client: socket.socket) -> None:
        try:
            while not self._stopped.is_set() and client.recv(65536):
                pass
        except OSError:
            pass


class DrippingRedis(_FakeServer):
    """Answers each command with ``$100000\\r\\n…``, one byte every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(self.interval)
            reply = b"$100000\r\n" + b"x" * 100000 + b"\r\n"
            sent = 0
            while not self._stopped.is_set() and sent < len(reply):
                try:
                    client.recv(65536)  # whatever was asked
                except socket.timeout:
                    pass
                client.sendall(reply[sent:sent + 1])
                sent += 1
        except OSError:
            pass
