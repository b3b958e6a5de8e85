"""Hostile clients for the slow-agents scenario's attack rows: each holds ``count``
connections to the service from one thread, non-blocking, for as long as the row runs.

* :class:`SlowReaders`: each connection pipelines ``/health`` requests (60 KB of
  them) and never reads an answer.
* :class:`LargeHeaders`: each connection sends 400 KB of request headers that never
  end; one the server closes is opened again (at most ``reopen_per_s``).
* :class:`IdleFlood`: connections that send nothing; one the server closes is
  opened again (at most ``reopen_per_s``), so the flood stays at ``count``.

Each attack runs in a process of its own, so that its work does not share the
measuring process's GIL with the ``/health`` poller and the healthy clients.
Loopback only; every socket is closed by :meth:`Attack.stop`.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time

API = "/api/v3.0/cluster"
PIPELINED_BYTES = 60 * 1024
LARGE_HEADER_BYTES = 400 * 1024


class Attack:
    """``count`` connections held from one thread until :meth:`stop`."""

    name = "attack"

    def __init__(self, port: int, count: int, reopen_per_s: float = 200.0) -> None:
        self.port = port
        self.count = count
        self.reopen_per_s = reopen_per_s
        context = multiprocessing.get_context("fork")
        self._closed = context.Value("i", 0)
        self._refused = context.Value("i", 0)
        self._stop = context.Event()
        self._process = context.Process(target=self._run, daemon=True, name=self.name)
        self._pending: dict[socket.socket, memoryview] = {}
        self.opened = 0

    @property
    def closed_by_server(self) -> int:
        """Connections the server closed (as far as the attack noticed)."""
        return int(self._closed.value)

    @property
    def refused(self) -> int:
        """Connection attempts that failed."""
        return int(self._refused.value)

    def payload(self) -> bytes:
        """What each connection sends once (then it sends nothing)."""
        return b""

    def reopens(self) -> bool:
        """Whether a connection the server closed is opened again."""
        return True

    def start(self) -> "Attack":
        self._process.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    def _open(self) -> None:
        self.opened += 1
        sock = socket.socket()
        try:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            with self._refused.get_lock():
                self._refused.value += 1
            sock.close()
            return
        sock.setblocking(False)
        payload = self.payload()
        self._pending[sock] = memoryview(payload)
        events = selectors.EVENT_WRITE if payload else 0
        if self.reads_to_detect_close():
            events |= selectors.EVENT_READ
        self._selector.register(sock, events)

    def _close(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except KeyError:
            pass
        self._pending.pop(sock, None)
        sock.close()

    def _count_closed(self) -> None:
        with self._closed.get_lock():
            self._closed.value += 1

    def _run(self) -> None:
        self._selector = selectors.DefaultSelector()
        budget, last = float(self.count), time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                budget = float(self.count) if self.reopen_per_s == float("inf") else \
                    min(float(self.count), budget + (now - last) * self.reopen_per_s)
                last = now
                while len(self._pending) < self.count and budget >= 1 \
                        and (self.reopens() or self.opened < self.count) \
                        and not self._stop.is_set():
                    budget -= 1
                    self._open()
                for key, events in self._selector.select(timeout=0.05):
                    self._on_event(key.fileobj, events)  # type: ignore[arg-type]
        finally:
            for sock in list(self._pending):
                self._close(sock)
            self._selector.close()

    def _on_event(self, sock: socket.socket, events: int) -> None:
        if events & selectors.EVENT_READ and self.reads_to_detect_close():
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = b"-"
            except OSError:
                data = b""
            if not data:
                self._count_closed()
                self._close(sock)
                return
        if events & selectors.EVENT_WRITE:
            rest = self._pending[sock]
            try:
                sent = sock.send(rest[:65536])
            except BlockingIOError:
                return
            except OSError:
                self._count_closed()
                self._close(sock)
                return
            rest = self._pending[sock] = rest[sent:]
            if not rest:
                if self.reads_to_detect_close():
                    self._selector.modify(sock, selectors.EVENT_READ)
                else:  # held open, never read, until stop()
                    self._selector.unregister(sock)

    def reads_to_detect_close(self) -> bool:
        """Whether reading is how a close is noticed (readers that never read: never)."""
        return True


class SlowReaders(Attack):
    name = "slow-readers"

    def payload(self) -> bytes:
        request = f"GET {API}/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        return request * (PIPELINED_BYTES // len(request))

    def reopens(self) -> bool:
        return False  # opened once; they never read, so a close shows only on a send

    def reads_to_detect_close(self) -> bool:
        return False

    def start(self) -> "Attack":
        self.reopen_per_s = float("inf")  # all at once
        return super().start()


class LargeHeaders(Attack):
    name = "large-headers"

    def payload(self) -> bytes:
        head = f"GET {API}/health HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        field = b"X-Padding: " + b"p" * 8000 + b"\r\n"
        return head + field * (LARGE_HEADER_BYTES // len(field))  # and never the blank line


class IdleFlood(Attack):
    name = "idle-flood"
