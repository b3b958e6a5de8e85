"""gunicorn's gthread worker with a header-read (and TLS handshake) deadline per connection.

Why: the stock gthread worker (gunicorn 27) waits up to 5 s for a connection's
first byte, then reads the TLS handshake and the request headers in a pool
thread on a blocking socket with no timeout. A client that sends half a
header (or 5 bytes of a ClientHello) and then nothing holds that thread for
good: ``threads`` such sockets per worker stop every request, the liveness
probe included (slowloris).

What this worker does instead: a connection stays in the worker's main loop
(the selector, non-blocking, no thread) until its TLS handshake is done and
its request headers have arrived in full; only then is it handed to a pool
thread, with those bytes already buffered, so parsing them cannot block. A
connection that has not got that far within ``HEADER_READ_TIMEOUT`` seconds of
being accepted (or, on a kept-alive connection, of its next request's first
byte) is closed. Idle half-requests then cost a file descriptor and a few KB
each, never a thread, and die within the timeout.

It also keeps connections evenly spread over the workers (``spread.py``): a worker
holding more than ``spread.SLACK`` connections above the least loaded of its siblings
stops accepting until they catch up.

Limits: request bodies and response writes still happen in the pool thread
on a blocking socket (gunicorn bounds the body drain after a response at 5 s;
our endpoints read no body). The number of open connections per worker is
still capped by gunicorn's ``worker_connections``.
"""

from __future__ import annotations

import errno
import select
import selectors
import ssl
import time
from typing import Any

from gunicorn import http, sock
from gunicorn.workers.gthread import ThreadWorker

from ..config import load_settings
from .spread import SpreadTable

_READ_SIZE = 65536
_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")
_UNLIMITED_HEADER_BYTES = 1024 * 1024
# How soon a worker that stopped accepting for the spread looks again when nothing else
# wakes its loop (the stock loop waits up to 1 s): soon while connections wait in the
# listening socket's backlog (a burst: its siblings are taking them, and it may be
# its turn again any moment), else a little later (a sibling may have died).
SPREAD_RECHECK_BURST_S = 0.002
SPREAD_RECHECK_S = 0.05
_spread_table: SpreadTable | None = None


def spread_table() -> SpreadTable:
    """The master's table, created before the first fork so that every worker shares it."""
    global _spread_table
    if _spread_table is None:
        _spread_table = SpreadTable()
    return _spread_table


class HeaderTimeoutWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, but a pool thread only ever sees a connection whose headers are complete."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # gunicorn.conf.py validated the same environment in the master already.
        self.header_read_timeout = load_settings().header_read_timeout
        self.max_header_bytes = _max_header_bytes(self.cfg)
        # Connections still reading headers, in deadline order (all share one timeout).
        self.reading: dict[Any, _HeaderRead] = {}
        # The master builds the worker object before it forks: reserve its row there.
        self.spread = spread_table()
        self.spread_row = self.spread.reserve()

    def release_spread_row(self) -> None:
        """Free this worker's row in the spread table (its process is gone or going)."""
        self.spread.release(self.spread_row)

    # -- the spread of connections (main thread) -------------------------------

    def _least_loaded(self) -> bool:
        if self.spread_row is None:
            return True
        self.spread.report(self.spread_row, self.nr_conns)
        return self.spread.may_accept(self.spread_row, self.nr_conns)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only while under ``worker_connections`` and the least loaded worker."""
        if enabled and self.alive and not self._least_loaded():
            enabled = False
        super().set_accept_enabled(enabled)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        if self._accepting and not self._least_loaded():
            super().set_accept_enabled(False)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.spread_row is not None:
            self.spread.report(self.spread_row, self.nr_conns)  # also the heartbeat
            if self.alive and not self._accepting and self.nr_conns < self.worker_connections:
                waiting, _, _ = select.select(self.sockets, [], [], 0)
                timeout = min(timeout, SPREAD_RECHECK_BURST_S if waiting else SPREAD_RECHECK_S)
        super().wait_for_and_dispatch_events(timeout)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.release_spread_row()

    # -- gthread hooks -------------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """Every path to the pool (new, kept-alive, pipelined) goes through the header stage."""
        state = _HeaderRead(time.monotonic() + self.header_read_timeout)
        if conn.parser is not None:  # a kept-alive connection may hold read-ahead bytes
            state.buffer.extend(conn.parser.unreader.take_buffered())
        conn.sock.setblocking(False)
        if self.cfg.is_ssl and not conn.initialized and not isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock = sock.ssl_context(self.cfg).wrap_socket(
                    conn.sock, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
            except (OSError, ValueError):
                self._drop(conn)
                return
        self.reading[conn] = state
        self._advance(conn, state, registered=False)

    def murder_pending(self) -> None:
        """Also close the connections whose headers did not arrive in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn, state = next(iter(self.reading.items()))
            if state.deadline > now:
                break
            self.log.debug("closing %s: no complete request headers within %.1f s",
                           conn.client, self.header_read_timeout)
            self._unregister(conn)
            self._drop(conn)

    # -- the header stage (main thread, non-blocking) -------------------------

    def _on_event(self, conn: Any, _fileobj: Any) -> None:
        state = self.reading.get(conn)
        if state is not None:
            self._advance(conn, state, registered=True)

    def _advance(self, conn: Any, state: "_HeaderRead", registered: bool) -> None:
        """Make what progress the socket allows; hand over, wait again, or close."""
        try:
            wanted = self._progress(conn, state)
        except (OSError, ValueError, EOFError):
            if registered:
                self._unregister(conn)
            self._drop(conn)
            return
        if wanted is None:  # headers complete (or over the limit: the parser will say so)
            if registered:
                self._unregister(conn)
            del self.reading[conn]
            try:
                self._hand_over(conn, state)
            except Exception:  # raised here it would end the worker's main loop
                self.log.exception("could not hand a connection to the thread pool")
                self._drop(conn)
            return
        if not registered:
            self.poller.register(conn.sock, wanted, self._make_callback(conn))
        elif state.events != wanted:
            self.poller.modify(conn.sock, wanted, self._make_callback(conn))
        state.events = wanted

    def _progress(self, conn: Any, state: "_HeaderRead") -> int | None:
        """The selector event to wait for next, or None when the headers are in."""
        if isinstance(conn.sock, ssl.SSLSocket) and not state.handshaken:
            try:
                conn.sock.do_handshake()
            except ssl.SSLWantReadError:
                return selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                return selectors.EVENT_WRITE
            state.handshaken = True
            if sock.is_http2_negotiated(conn.sock):
                return None  # HTTP/2 frames are not HTTP/1 headers; gunicorn reads them
        if state.complete(self.max_header_bytes):  # pipelined read-ahead may hold them
            return None
        while True:
            try:
                data = conn.sock.recv(_READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                return selectors.EVENT_WRITE
            if not data:
                raise EOFError("client closed before its headers were complete")
            state.buffer.extend(data)
            if state.complete(self.max_header_bytes):
                return None

    def _hand_over(self, conn: Any, state: "_HeaderRead") -> None:
        conn.sock.setblocking(True)
        conn.data_ready = True
        if not conn.initialized:
            if isinstance(conn.sock, ssl.SSLSocket):
                # The TLS handshake is done; build the parser gthread's init() would.
                conn.initialized = True
                if sock.is_http2_negotiated(conn.sock):
                    conn.is_http2 = True
                    conn.parser = http.get_parser(self.cfg, conn.sock, conn.client,
                                                  http2_connection=True)
                    conn.parser.initiate_connection()
                else:
                    conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            else:
                conn.init()
        if state.buffer:
            conn.parser.unreader.unread(bytes(state.buffer))
        super().enqueue_req(conn)

    def _make_callback(self, conn: Any) -> Any:
        return lambda fileobj: self._on_event(conn, fileobj)

    def _unregister(self, conn: Any) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn: Any) -> None:
        self.reading.pop(conn, None)
        self.nr_conns -= 1
        try:
            conn.close()
        except OSError as error:
            if error.errno not in (errno.EBADF, errno.ENOTCONN):
                raise


class _HeaderRead:
    """One connection's progress towards complete request headers."""

    __slots__ = ("deadline", "buffer", "handshaken", "events", "_scanned")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.buffer = bytearray()
        self.handshaken = False
        self.events = 0
        self._scanned = 0

    def complete(self, limit: int) -> bool:
        """Whether the headers have arrived in full, or more than any valid header has."""
        if len(self.buffer) > limit:
            return True
        start = max(0, self._scanned - 3)  # an end marker may straddle two reads
        self._scanned = len(self.buffer)
        return any(self.buffer.find(end, start) >= 0 for end in _END_OF_HEADERS)


def _max_header_bytes(cfg: Any) -> int:
    """The most bytes a request line plus headers may take under gunicorn's limits."""
    line, fields = cfg.limit_request_line, cfg.limit_request_fields
    size = cfg.limit_request_field_size
    if not (line and fields and size):
        return _UNLIMITED_HEADER_BYTES
    return int(line + 2 + fields * (size + 2) + 2)
