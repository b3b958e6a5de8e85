"""gunicorn's gthread worker whose main loop keeps the pod answerable under any load.

Why: the stock gthread worker (gunicorn 27) reads the TLS handshake and request
headers in a pool thread on a blocking socket with no timeout, queues requests for
a thread without bound, writes responses on a blocking socket with no timeout, and
stops accepting at ``worker_connections``. Each of these lets load or a hostile
client take the probes down with the work: half-sent headers (slowloris), hung
agents holding every thread, clients that ask and never read, large headers held in
memory, idle sockets beyond the connection limit. A pod whose liveness probe does
not answer is restarted, dropping every request in flight.

What this worker does instead, all in its main loop (the selector, non-blocking,
no thread):

* **Headers first.** A connection stays in the main loop until its TLS handshake is
  done and its request headers have arrived in full; only then is it handed to a
  pool thread, with those bytes already buffered, so parsing them cannot block. One
  that has not got that far within ``HEADER_READ_TIMEOUT`` of being accepted (or of
  its next request's first byte) is closed. Headers over ``MAX_HEADER_BYTES`` are
  answered 431 and the connection closed; when the half-read headers of all
  connections pass ``MAX_PENDING_HEADER_BYTES``, the connections holding the most
  are closed, so memory stays bounded however many connections send them.
* **Probes never wait for a thread.** ``/health`` and ``/ready`` are parsed by
  gunicorn's own parser and run through the app (request id, access line, metrics)
  by the main loop itself, and their answers written without blocking
  (``probes.py``); a client that does not read them is closed after
  ``WRITE_STALL_TIMEOUT``. Probes pipelined behind one another wait in a slow lane,
  a few per loop turn, none while new connections wait to be accepted, and at most
  ``MAX_PIPELINED_ANSWERS`` in a row per connection: no kubelet pipelines, and each
  answer costs the main loop a fraction of a millisecond.
* **Bounded wait for a thread.** A request still waiting for a thread
  ``REQUEST_QUEUE_TIMEOUT`` after its headers arrived is taken back from the pool's
  queue and answered 503 with ``Retry-After`` by the main loop.
* **Bounded write stall.** A pool thread's response write that makes no progress for
  ``WRITE_STALL_TIMEOUT`` (``SO_SNDTIMEO``) fails; the connection is closed and the
  thread freed. A connection is in one place at a time, so pipelined requests hold
  one thread at most.
* **Connection floods.** At ``worker_connections`` the worker keeps accepting: a new
  connection closes the oldest idle one (finished and lingering, kept alive, still
  sending headers, then a stalled writer); when every connection is at work it gets
  an immediate 503 instead of a silent wait in the listen backlog.
* **Closing never blocks.** A connection is closed by half-closing it and draining
  what the client still sends in the main loop, for ``LINGER_S`` at most (stock
  gthread does that with a blocking read of up to 2 s in its main loop).

Every refusal or forced close is counted by reason and logged once per interval
(``overload.py``).

The worker's other threads, and how work crosses between them: docs/architecture.md
§3. It also keeps connections evenly spread over the workers (``spread.py``): a worker
holding more than ``spread.SLACK`` connections (a sixteenth, when many) above the least
loaded of its siblings stops accepting until they catch up.
"""

from __future__ import annotations

import errno
import fcntl
import re
import select
import selectors
import socket
import ssl
import struct
import sys
import termios
import time
from collections import deque
from datetime import datetime
from typing import Any

from gunicorn import http, sock, util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn, ThreadWorker

from ..api.request_id import choose_request_id
from ..config import load_settings
from . import overload
from .probes import Capture, has_body, is_probe
from .spread import SpreadTable

_READ_SIZE = 65536
_END_OF_HEADERS = re.compile(rb"\n\r?\n")  # the first blank line (bare LF too, as gunicorn)
# How long a closing connection may keep sending before it is cut off, and how much of
# it is read and thrown away meanwhile (so the kernel sends our last answer, not a reset).
LINGER_S = 2.0
_LINGER_MAX_BYTES = 64 * 1024  # as gunicorn's close_graceful
# Stalled writes are looked for at most this often (a scan over the writers).
_STALL_SCAN_S = 0.25
# After an answer of its own, the main loop takes a connection's next request only once
# the kernel holds at most this much of what it sent and the client has not read: else a
# client that pipelines probes and reads nothing would be answered until the kernel's
# send buffer (megabytes) is full, main-loop time spent on it all the while.
_PARK_UNSENT_BYTES = 64 * 1024
# Pipelined requests the main loop takes up per turn, over all connections: a few
# milliseconds of answers at most, so a new connection's probe waits no longer.
PIPELINED_PER_TURN = 8
_PIPELINED_DURING_BACKLOG_S = 0.005
ACCEPT_PER_TURN = 16
# Connections past their header deadline closed per loop turn: a thousand opened together
# expire together, and closing them all at once would stall the loop (and the probes).
_EXPIRE_PER_TURN = 64
# Answers the main loop gives one connection's pipelined requests in a row before it
# closes the connection (a client may then ask again on a new one).
MAX_PIPELINED_ANSWERS = 4
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
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


class _Discard:
    """A socket that takes and drops what gunicorn's own error page would write."""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        pass

    def send(self, data: bytes) -> int:
        return len(data)


def _error_status(error: BaseException) -> int:
    """The status gunicorn answers a request it could not parse with (its handle_error)."""
    if isinstance(error, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
                          http_errors.ConfigurationProblem)):
        return 500  # the application's or the configuration's fault, not the client's
    if isinstance(error, http_errors.LimitRequestLine):
        return 414
    if isinstance(error, http_errors.LimitRequestHeaders):
        return 431
    if isinstance(error, (http_errors.ForbiddenProxyRequest, ssl.SSLError)):
        return 403
    if isinstance(error, http_errors.ExpectationFailed):
        return 417
    if isinstance(error, http_errors.UnsupportedTransferCoding):
        return 501
    if isinstance(error, (http_errors.ParseException, http_errors.NoMoreData)):
        return 400
    return 500


class HeaderTimeoutWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, but a pool thread only ever sees a connection whose headers are complete,
    and the main loop answers the probes and sheds what would wait without bound."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A request gunicorn could not parse (a request line over ``limit_request_line``:
        414, bad headers: 400, ...) gets the contract's error envelope, not gunicorn's
        HTML page; gunicorn still logs it and writes its access line."""
        super().handle_error(req, _Discard(), addr, exc)
        sent = None
        if req is not None:
            sent = next((value for name, value in getattr(req, "headers", ())
                         if name.upper() == "X-REQUEST-ID"), None)
        answer = overload.http_error(_error_status(exc), choose_request_id(sent))
        try:
            if isinstance(client, Capture):
                client.sendall(answer)
            else:
                util.write_nonblock(client, answer)
        except Exception:  # the client went away: nothing more to tell it
            self.log.debug("Failed to send error message.")

    alive: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # gunicorn.conf.py validated the same environment in the master already.
        settings = load_settings()
        self.header_read_timeout = settings.header_read_timeout
        self.queue_timeout = settings.request_queue_timeout
        self.write_stall_timeout = settings.write_stall_timeout
        self.max_header_bytes = min(settings.max_header_bytes, _max_header_bytes(self.cfg))
        self.max_pending_header_bytes = settings.max_pending_header_bytes
        self.metrics_enabled = settings.metrics_enabled
        self.shed = overload.ShedLog()
        # Connections still reading headers, in deadline order (all share one timeout),
        # and the bytes their buffers hold together.
        self.reading: dict[Any, _HeaderRead] = {}
        self.header_bytes = 0
        # Answers the main loop writes itself (probes, refusals), by connection.
        self.writing: dict[Any, _Output] = {}
        self.next_stall_scan = 0.0
        # Connections half-closed and drained until their deadline (insertion = deadline order).
        self.closing: dict[Any, float] = {}
        # Connections whose next request was pipelined behind an answer of the main loop.
        self.pipelined: dict[Any, None] = {}
        self.next_pipelined = 0.0
        self.expired_left = False  # more past their header deadline than one turn closes
        # Requests handed to the pool, oldest first, until a thread takes them.
        self.queued: deque[_Ticket] = deque()
        # The master builds the worker object before it forks: reserve its row there.
        self.spread = spread_table()
        self.spread_row = self.spread.reserve()

    def init_process(self) -> None:
        # After fork: gunicorn.conf.py has set the metrics directory by now.
        if self.metrics_enabled:
            self.shed = overload.ShedLog(overload.prometheus_counter())
        super().init_process()

    def release_spread_row(self) -> None:
        """Free this worker's row in the spread table (its process is gone or going)."""
        self.spread.release(self.spread_row)

    # -- the spread of connections, and floods (main thread) --------------------

    def _least_loaded(self) -> bool:
        if self.spread_row is None:
            return True
        self.spread.report(self.spread_row, self.nr_conns)
        return self.spread.may_accept(self.spread_row, self.nr_conns)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept while the least loaded worker, even at ``worker_connections``: ``accept``
        makes room, or refuses at once (a silent wait in the backlog starves the probes)."""
        if self.alive:
            enabled = self._least_loaded()
        super().set_accept_enabled(enabled)

    def accept(self, listener: Any) -> None:
        """Accept what waits, up to ``ACCEPT_PER_TURN`` while this worker stays the least
        loaded: in a burst of connections a probe waits behind those accepted before it,
        and accepting one per turn of the loop made that wait long."""
        for _ in range(ACCEPT_PER_TURN):
            if not self._accept_one(listener) or not self._accepting:
                return

    def _accept_one(self, listener: Any) -> bool:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):  # out of file descriptors:
                self.shed.shed("too_many_connections")  # free one for the next turn
                self._close_an_idle_connection()
                return False
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return False
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if self.nr_conns > self.worker_connections and not self._close_an_idle_connection():
            self.shed.shed("too_many_connections")
            self._answer_and_close(conn, overload.saturated(overload.call_id_of(b"")))
        else:
            self.enqueue_req(conn)
        if self._accepting and not self._least_loaded():
            super().set_accept_enabled(False)
        return True

    def _close_an_idle_connection(self) -> bool:
        """Close the connection that is least likely to be missed; False if all are at work."""
        if self.closing:
            self._drop(next(iter(self.closing)))
            return True
        if self.keepalived_conns:
            conn = self.keepalived_conns.popleft()
            self.shed.shed("idle_closed")
            self._drop(conn)
            return True
        if self.reading:
            self.shed.shed("idle_closed")
            self._drop(next(iter(self.reading)))
            return True
        if self.pipelined:  # answered already; more pipelined requests are a luxury
            self.shed.shed("idle_closed")
            self._drop(next(iter(self.pipelined)))
            return True
        if self.writing:  # the answer that has waited longest for its reader
            self.shed.shed("write_stall")
            self._drop(min(self.writing, key=lambda c: self.writing[c].deadline))
            return True
        return False

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.spread_row is not None:
            self.spread.report(self.spread_row, self.nr_conns)  # also the heartbeat
            if self.alive and not self._accepting:  # the spread's pause (there is no limit)
                waiting, _, _ = select.select(self.sockets, [], [], 0)
                timeout = min(timeout, SPREAD_RECHECK_BURST_S if waiting else SPREAD_RECHECK_S)
        if self.queued:
            timeout = min(timeout, max(0.0, self.queued[0].deadline - time.monotonic()))
        if self.pipelined or self.expired_left:
            timeout = 0.0
        super().wait_for_and_dispatch_events(timeout)
        if not self.pipelined:
            return
        # New connections first (a probe may be among them): while some wait to be
        # accepted, one pipelined request every few milliseconds.
        backlog, _, _ = select.select(self.sockets, [], [], 0)
        budget = PIPELINED_PER_TURN
        if backlog:
            now = time.monotonic()
            budget = 0
            if now >= self.next_pipelined:
                budget, self.next_pipelined = 1, now + _PIPELINED_DURING_BACKLOG_S
        for _ in range(min(budget, len(self.pipelined))):
            conn = next(iter(self.pipelined))
            del self.pipelined[conn]
            conn.in_turn = True
            self.enqueue_req(conn)

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
        self._count_header_bytes(state)
        self._advance(conn, state, registered=False)

    def murder_pending(self) -> None:
        """Also: headers that did not arrive in time, requests that found no thread in
        time, answers nobody reads, lingering closes; and the shed log's line."""
        super().murder_pending()
        now = time.monotonic()
        self.expired_left = False
        for _ in range(_EXPIRE_PER_TURN):
            if not self.reading:
                break
            conn, state = next(iter(self.reading.items()))
            if state.deadline > now:
                break
            self.log.debug("closing %s: no complete request headers within %.1f s",
                           conn.client, self.header_read_timeout)
            self._drop(conn)
        else:
            self.expired_left = bool(self.reading)
        self._take_back_queued(now)
        if self.writing and now >= self.next_stall_scan:
            self.next_stall_scan = now + _STALL_SCAN_S
            for conn, out in list(self.writing.items()):
                if out.parked:
                    self._look_at_parked(conn, out, now)
                elif out.deadline <= now:
                    self.shed.shed("write_stall")
                    self._drop(conn)
        while self.closing:
            conn, deadline = next(iter(self.closing.items()))
            if deadline > now:
                break
            self._drop(conn)
        self.shed.tick()

    def finish_request(self, conn: Any, fs: Any) -> None:
        """As gthread's, but a request taken back from the queue is answered 503, and a
        connection to close lingers in the main loop instead of blocking it."""
        if fs.cancelled():
            self.shed.shed("queue_timeout")
            self._answer_and_close(conn, overload.saturated(conn.shed_request_id))
            return
        try:
            keep = fs.result()
        except Exception:  # handle() catches everything; a backstop
            keep = False
        if not keep:
            self._close_lingering(conn)
            return
        super().finish_request(conn, fs)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gthread's, with a response write that stalled turned into a quiet close."""
        try:
            return bool(super().handle_request(req, conn))
        except (BlockingIOError, ssl.SSLWantWriteError, TimeoutError):
            self.shed.shed("write_stall")
            raise BrokenPipeError(errno.EPIPE, "response write stalled") from None

    # -- the header stage (main thread, non-blocking) -------------------------

    def _on_event(self, conn: Any, _fileobj: Any) -> None:
        state = self.reading.get(conn)
        if state is not None:
            self._advance(conn, state, registered=True)

    def _advance(self, conn: Any, state: "_HeaderRead", registered: bool) -> None:
        """Make what progress the socket allows; hand over, answer, wait again, or close."""
        try:
            wanted = self._progress(conn, state)
        except (OSError, ValueError, EOFError):
            self._drop(conn)  # the bytes of this last read were never counted
            return
        self._count_header_bytes(state)
        if wanted is None:  # headers complete, or too large
            if registered:
                self._unregister(conn)
            self._leave_reading(conn)
            try:
                if state.too_large:
                    self.shed.shed("headers_too_large")
                    self._answer_and_close(conn, overload.headers_too_large(
                        overload.call_id_of(state.buffer[:self.max_header_bytes])))
                elif is_probe(state.buffer):
                    if state.end < len(state.buffer) and not conn.__dict__.pop("in_turn", False):
                        self._pipelined_later(conn, state)
                    else:
                        self._serve_probe(conn, state)
                else:
                    self._hand_over(conn, state)
            except Exception:  # raised here it would end the worker's main loop
                self.log.exception("could not serve or hand over a connection")
                self._drop(conn)
            return
        if not registered:
            self.poller.register(conn.sock, wanted, self._make_callback(conn))
        elif state.events != wanted:
            self.poller.modify(conn.sock, wanted, self._make_callback(conn))
        state.events = wanted
        if self.header_bytes > self.max_pending_header_bytes:
            self._shed_header_memory()

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
            try:  # read no further than the limit (and a little, to see an end marker)
                data = conn.sock.recv(min(_READ_SIZE,
                                          self.max_header_bytes + 5 - len(state.buffer)))
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                return selectors.EVENT_WRITE
            if not data:
                raise EOFError("client closed before its headers were complete")
            state.buffer.extend(data)
            if state.complete(self.max_header_bytes):
                return None

    def _count_header_bytes(self, state: "_HeaderRead") -> None:
        self.header_bytes += len(state.buffer) - state.counted
        state.counted = len(state.buffer)

    def _leave_reading(self, conn: Any) -> None:
        state = self.reading.pop(conn, None)
        if state is not None:
            self.header_bytes -= state.counted
            state.counted = 0

    def _shed_header_memory(self) -> None:
        """Close the connections holding the most half-read header bytes until under the cap."""
        while self.reading and self.header_bytes > self.max_pending_header_bytes:
            largest = max(self.reading, key=lambda c: len(self.reading[c].buffer))
            self.shed.shed("header_memory")
            self._drop(largest)

    def _ensure_parser(self, conn: Any) -> None:
        if conn.initialized:
            return
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

    def _hand_over(self, conn: Any, state: "_HeaderRead") -> None:
        conn.sock.setblocking(True)
        # A write that makes no progress this long fails (the thread is then freed).
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                             _timeval(self.write_stall_timeout))
        conn.data_ready = True
        self._ensure_parser(conn)
        if state.buffer:
            conn.parser.unreader.unread(bytes(state.buffer))
        ticket = _Ticket(time.monotonic() + self.queue_timeout)
        conn.shed_request_id = None
        future = self.tpool.submit(self._handle_queued, conn, ticket)
        future.add_done_callback(
            lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
        ticket.future = future
        ticket.conn = conn
        ticket.sent_id = overload.sent_request_id(state.buffer)
        self.queued.append(ticket)

    def _handle_queued(self, conn: Any, ticket: "_Ticket") -> Any:
        ticket.started = True
        return self.handle(conn)

    def _take_back_queued(self, now: float) -> None:
        """Requests that waited ``REQUEST_QUEUE_TIMEOUT`` for a thread leave the queue;
        ``finish_request`` answers them 503."""
        while self.queued:
            ticket = self.queued[0]
            if not ticket.started and ticket.deadline > now:
                break
            self.queued.popleft()
            if not ticket.started:
                ticket.conn.shed_request_id = choose_request_id(ticket.sent_id)
                ticket.future.cancel()  # False if a thread took it meanwhile: it is served
            ticket.conn = ticket.future = None

    # -- answers written by the main loop ------------------------------------

    def _pipelined_later(self, conn: Any, state: "_HeaderRead") -> None:
        """A probe with more requests pipelined behind it, from its first: the slow lane.

        A kubelet sends one request and waits for the answer; a client that pipelines
        probes from the start (hundreds of them, never reading, in a flood) would
        otherwise be answered before the connections accepted after it, a kubelet's
        among them."""
        self._ensure_parser(conn)
        conn.sock.setblocking(False)
        conn.parser.unreader.unread(bytes(state.buffer))
        self.pipelined[conn] = None

    def _serve_probe(self, conn: Any, state: "_HeaderRead") -> None:
        """Parse and run a probe request here, as a pool thread would, into a buffer."""
        self._ensure_parser(conn)
        conn.sock.setblocking(False)
        if state.buffer:
            conn.parser.unreader.unread(bytes(state.buffer))
        out = Capture()
        req = None
        try:
            req = next(conn.parser)
            keep = self._serve_inline(req, conn, out)
        except (StopIteration, OSError, http.errors.NoMoreData):
            keep = False
        except Exception as error:  # gunicorn's own answer to a bad request (400, 431, ...)
            self.handle_error(req, out, conn.client, error)
            keep = False
        if out.data:
            self._write(conn, bytes(out.data), keep)
        else:
            self._close_lingering(conn)

    def _serve_inline(self, req: Any, conn: Any, out: Capture) -> bool:
        """gthread's ``handle_request`` with ``out`` for the socket; True: keep alive."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, out, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if (not self.alive or not self.cfg.keepalive or has_body(req)
                    or len(self.keepalived_conns) >= self.max_keepalived):
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    def _answer_and_close(self, conn: Any, data: bytes) -> None:
        self._write(conn, data, keep=False)

    def _write(self, conn: Any, data: bytes, keep: bool) -> None:
        """Send ``data`` without blocking; then keep the connection alive or close it."""
        conn.sock.setblocking(False)
        self.writing[conn] = _Output(data, time.monotonic() + self.write_stall_timeout, keep)
        self._flush(conn, registered=False)

    def _flush(self, conn: Any, registered: bool) -> None:
        out = self.writing.get(conn)
        if out is None:  # closed by an earlier event of the same turn
            return
        try:
            while out.sent < len(out.data):
                sent = conn.sock.send(out.view[out.sent:])
                out.sent += sent
                out.deadline = time.monotonic() + self.write_stall_timeout
        except _WOULD_BLOCK:
            if not registered:
                self.poller.register(conn.sock, selectors.EVENT_WRITE,
                                     lambda _fileobj: self._flush(conn, registered=True))
            return
        except OSError:
            self._drop(conn)
            return
        if registered:
            self._unregister(conn)
        if out.keep and self.alive:
            try:
                unsent = _unsent_bytes(conn.sock)
            except OSError:
                self._drop(conn)
                return
            if unsent > _PARK_UNSENT_BYTES:  # the stall scan looks again
                out.parked = unsent
                return
        self._after_write(conn)

    def _after_write(self, conn: Any) -> None:
        out = self.writing.pop(conn)
        if not out.keep or not self.alive:
            self._close_lingering(conn)
        elif conn.parser.unreader.buf.getvalue():
            # Pipelined: the next request is here already. Taken in turn with the other
            # pipelining connections, a few per turn of the loop, after the events of
            # the others (a new probe's among them), never request after request; and
            # only so many in a row, since each costs the main loop (no kubelet pipelines).
            conn.pipelined_answers = getattr(conn, "pipelined_answers", 0) + 1
            if conn.pipelined_answers >= MAX_PIPELINED_ANSWERS:
                self.shed.shed("pipelining")
                self._close_lingering(conn)
            else:
                self.pipelined[conn] = None
        else:  # idle keep-alive, exactly as gthread keeps a connection after a request
            conn.pipelined_answers = 0
            conn.set_timeout()
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 lambda client: self.on_client_socket_readable(conn, client))

    def _look_at_parked(self, conn: Any, out: "_Output", now: float) -> None:
        """A connection whose client had not read our answers: go on once it has read
        enough, close it once it has read nothing for ``WRITE_STALL_TIMEOUT``."""
        try:
            unsent = _unsent_bytes(conn.sock)
        except OSError:
            self._drop(conn)
            return
        if unsent < out.parked:
            out.parked, out.deadline = unsent, now + self.write_stall_timeout
        if unsent <= _PARK_UNSENT_BYTES:
            out.parked = 0
            self._after_write(conn)
        elif out.deadline <= now:
            self.shed.shed("write_stall")
            self._drop(conn)

    # -- closing without blocking ----------------------------------------------

    def _close_lingering(self, conn: Any) -> None:
        """Half-close, then drain what the client still sends for ``LINGER_S`` at most, so
        the kernel delivers our last answer instead of resetting the connection."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 lambda _fileobj: self._drain(conn))
        except (OSError, ValueError, KeyError):
            self._drop(conn)
            return
        conn.drained = 0
        self.closing[conn] = time.monotonic() + LINGER_S

    def _drain(self, conn: Any) -> None:
        if conn not in self.closing:  # closed by an earlier event of the same turn
            return
        try:
            while True:
                data = conn.sock.recv(_READ_SIZE)
                conn.drained += len(data)
                if not data or conn.drained > _LINGER_MAX_BYTES:
                    break
        except _WOULD_BLOCK:
            return
        except OSError:
            pass
        self._drop(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """gthread's, unless an earlier event of the same turn closed the connection (to
        make room for a new one)."""
        if not getattr(conn, "dropped", False):
            super().on_client_socket_readable(conn, client)

    def _make_callback(self, conn: Any) -> Any:
        return lambda fileobj: self._on_event(conn, fileobj)

    def _unregister(self, conn: Any) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn: Any) -> None:
        """Close a connection the main loop holds, wherever it is, and stop counting it."""
        if getattr(conn, "dropped", False):
            return
        self._unregister(conn)
        self._leave_reading(conn)
        self.writing.pop(conn, None)
        self.closing.pop(conn, None)
        self.pipelined.pop(conn, None)
        conn.dropped = True
        self.nr_conns -= 1
        try:
            conn.close()
        except OSError as error:
            if error.errno not in (errno.EBADF, errno.ENOTCONN):
                raise


class _HeaderRead:
    """One connection's progress towards complete request headers."""

    __slots__ = ("deadline", "buffer", "handshaken", "events", "counted", "too_large", "end",
                 "_scanned")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.buffer = bytearray()
        self.handshaken = False
        self.events = 0
        self.counted = 0
        self.too_large = False
        self.end = 0  # where the headers end, once complete
        self._scanned = 0

    def complete(self, limit: int) -> bool:
        """Whether the headers have arrived in full, or more than ``limit`` bytes of them."""
        start = max(0, self._scanned - 3)  # an end marker may straddle two reads
        self._scanned = len(self.buffer)
        end = _END_OF_HEADERS.search(self.buffer, start)
        if end is not None:
            self.end = end.end()
            self.too_large = self.end > limit
            return True
        if len(self.buffer) > limit:
            self.too_large = True
            return True
        return False


class _Output:
    """An answer the main loop writes, how far it got, and when it gives up on the reader."""

    __slots__ = ("data", "view", "sent", "deadline", "keep", "parked")

    def __init__(self, data: bytes, deadline: float, keep: bool) -> None:
        self.data = data
        self.view = memoryview(data)
        self.sent = 0
        self.deadline = deadline
        self.keep = keep
        self.parked = 0  # sent in full, but this much still unread in the kernel: waiting


def _unsent_bytes(sock: Any) -> int:
    """Bytes in the socket's send queue the client has not acknowledged (Linux TIOCOUTQ)."""
    found = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", found)[0])


class _Ticket:
    """A request handed to the pool: until when it may wait, and whether a thread took it."""

    __slots__ = ("deadline", "started", "future", "conn", "sent_id")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.started = False
        self.future: Any = None
        self.conn: Any = None
        self.sent_id: str | None = None  # the client's X-Request-ID, for a 503


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _max_header_bytes(cfg: Any) -> int:
    """The most bytes a request line plus headers may take under gunicorn's limits."""
    line, fields = cfg.limit_request_line, cfg.limit_request_fields
    size = cfg.limit_request_field_size
    if not (line and fields and size):
        return sys.maxsize
    return int(line + 2 + fields * (size + 2) + 2)
