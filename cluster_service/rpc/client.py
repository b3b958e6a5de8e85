"""RPC logic over a message broker: call ids, waiting, timeouts and reply routing.

This module never imports pika. It talks to a :class:`Transport` (the pika I/O
thread in ``pika_transport.py``, or a fake in unit tests) through three plain
callables, so the logic can be tested in milliseconds and the transport against
the real broker.

Threading model (one instance per gunicorn worker process)
-----------------------------------------------------------
Every thread of a worker, and how work crosses between them: docs/architecture.md §3.

* **Request threads** (gunicorn's gthread pool) call :meth:`RpcClient.call`.
  Each call first takes one of the worker's RPC slots (``admission.Slots``,
  ``MAX_INFLIGHT_RPCS``: it bounds the memory replies can hold), waiting in
  line no later than the call's deadline. It then creates one
  :class:`PendingCall` (a lock released once decided, plus a result slot),
  registers it in ``_pending`` under ``_lock``, asks the transport to publish, and blocks on
  it until the deadline. Request threads never touch pika objects;
  ``Transport.publish`` only hands the request to the I/O thread (the pika
  transport queues it in its outbox and wakes the I/O thread for the first of a
  batch, ``outbox.py``).
* **The I/O thread** (owned by the transport) is the only thread that touches
  the pika connection. It delivers every reply to :meth:`on_reply` and every
  connection change to :meth:`on_connection_change`. Both are short: they look
  up or fail pending calls and wake their waiters; they never block. Connection
  listeners (``add_connection_listener``) run there too and are just as short.
* **Consumer presence** (fail fast when a peer is down): before publishing, a
  request thread asks ``Transport.consumer_count(queue)``. That reads a cache
  which the I/O thread fills from the broker (the consumer count of a passive
  queue declare, refreshed about once a second while the queue is in use);
  only a stale entry makes the request thread wait, briefly and with a
  timeout, for the I/O thread to refresh it. A count of 0 fails the call at
  once with :class:`NoConsumer`; an unknown count (None) lets it through.
* ``_lock`` guards ``_pending`` and ``_connected`` together. Registering a call
  and checking that the connection is up happen under the same lock as
  "connection lost, fail everything pending", so a call is either failed by the
  disconnect or refused up front; none can slip in between and wait for a reply
  that can no longer come.

Reply routing
-------------
A peer answers either to ``reply_to`` (this worker's own exclusive queue) or to
a fixed results queue shared by every worker of every replica. A reply is
matched by ``correlation_id`` or, failing that, by the body's ``request_id``.
Call ids name their owner (``call_ids.py``: a version-8 UUID carrying
the token of the connection that made it, and that connection's reply queue is
named after the token). A reply found on a *fixed* queue whose request is not
ours is returned as :attr:`ReplyOutcome.FORWARD` with the owner's queue; the
transport publishes it there through the default exchange, marked as
forwarded, so it costs one more delivery whatever the number of workers. A
forward to a queue that no longer exists (its worker died) is dropped by the
broker. Only an id without a token (a version-4 id from an earlier version of
the service, during a rolling update) is returned as
:attr:`ReplyOutcome.BROADCAST`: the transport republishes it to the fanout
exchange every reply queue is bound to, its owner resolves it and everyone
else drops it as ``not_owner``. Forwarded and broadcast replies are never
relayed again, so nothing loops. Unknown, late and duplicate replies, and ids
that are neither, are dropped and counted; their bodies are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Callable

from ..concurrency.admission import Slots
from ..errors import (BrokerUnavailable, NoConsumer, RemoteError, RpcError, RpcTimeout,
                      Saturated)
from ..observability.observer import Observer
from ..observability.request_context import current_request_id
from .bodies import parse_reply, call_id_of
from .pending import PendingCall, expiration_ms
from .call_ids import is_legacy_id, new_call_id, owner_token, reply_queue_name
from .transport import (BROADCAST, DELIVERED, DROPPED, OutgoingRequest, ReplyOutcome, Routing,
                        Transport)

log = logging.getLogger(__name__)


class RpcClient:
    """Request/reply over a :class:`Transport`; safe to call from many threads."""

    def __init__(self, transport: Transport, *, fixed_queues: tuple[str, ...] = (),
                 connect_wait: float = 5.0,
                 observer: Observer | None = None, max_reply_bytes: int = 1024 * 1024,
                 largest_reply_bytes: int = 0,
                 max_inflight: int = 100000, peers: dict[str, str] | None = None) -> None:
        self._transport = transport
        self._peers = dict(peers or {})  # request queue -> the peer's name, for NoConsumer
        self._observer = observer or Observer()
        self._slots = Slots(max_inflight, self._observer, scope="rpc")
        self._fixed_queues = frozenset(fixed_queues)
        self._connect_wait = connect_wait
        self._max_reply_bytes = max_reply_bytes  # a call's bound unless it names its own
        # The bound of a reply not yet matched to its call: the largest any call allows.
        self._largest_reply_bytes = max(max_reply_bytes, largest_reply_bytes)
        self._lock = threading.Lock()
        self._pending: dict[str, PendingCall] = {}
        self._connected = False
        self._owner = ""  # the current connection's owner token (call_ids.py)
        self._first_attempt_done = threading.Event()
        self._started = False
        self._closed = False
        self._listeners: list[Callable[[bool], None]] = []

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(connected)`` on every connection change (in the I/O thread:
        it must be short and must not block)."""
        self._listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the transport once (idempotent). Call after fork, never at import."""
        if self._started:  # every call asks: the common answer takes no lock
            return
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        self._transport.start(self.on_reply, self.on_connection_change)

    def close(self, timeout: float = 5.0) -> None:
        """Fail what is pending and close the transport."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started:
            self._observer.broker_closing()  # the down that follows is no failure
            self._transport.close(timeout)
        self._fail_all(BrokerUnavailable())

    @property
    def connected(self) -> bool:
        """Whether this worker's broker connection is up now."""
        return self._connected

    @property
    def broker_node(self) -> str:
        """``host:port`` of the broker node this worker is connected to ('' if unknown)."""
        return str(getattr(self._transport, "node", "")) if self._connected else ""

    @property
    def pending_count(self) -> int:
        """How many calls are waiting for a reply (0 when idle: nothing leaks)."""
        return len(self._pending)

    # -- request side (request threads) -------------------------------------

    def call(self, queue: str, payload: dict[str, Any], timeout: float,
             deadline: float | None = None,
             max_reply_bytes: int | None = None) -> dict[str, Any]:
        """Publish ``payload`` to ``queue`` and return the reply body as a dict.

        ``request_id`` (the call id, under the contract's name) and ``timestamp`` are
        added to the payload. The call ends
        by ``deadline`` (a ``time.monotonic()`` value; default: ``timeout`` from
        now, once the first connection attempt is done), waiting in line for one
        of the worker's ``max_inflight`` RPC slots included. Raises
        BrokerUnavailable (NoConsumer when nobody consumes ``queue``), Saturated
        (no slot before the deadline), RpcTimeout, or RemoteError (reply not a
        JSON object, or longer than ``max_reply_bytes``, default: the client's bound).
        """
        reply: dict[str, Any] = self._timed(queue, payload, timeout, deadline,
                                            max_reply_bytes, parse_reply)
        return reply

    def call_bytes(self, queue: str, payload: dict[str, Any], timeout: float,
                   deadline: float | None = None, max_reply_bytes: int | None = None) -> bytes:
        """As :meth:`call`, but the reply body unparsed: the caller decides when to parse
        it (a reply of megabytes is parsed under the caller's own bound)."""
        body: bytes = self._timed(queue, payload, timeout, deadline, max_reply_bytes, None)
        return body

    def _timed(self, queue: str, payload: dict[str, Any], timeout: float,
               deadline: float | None, max_reply_bytes: int | None,
               decode: Callable[[bytes], Any] | None) -> Any:
        started = time.monotonic()
        outcome = "error"
        try:
            body = self._call_raw(queue, payload, timeout, deadline,
                                  max_reply_bytes or self._max_reply_bytes)
            reply = decode(body) if decode is not None else body
            outcome = "ok"
            return reply
        except RpcTimeout:
            outcome = "timeout"
            raise
        except NoConsumer:
            outcome = "no_consumer"
            raise
        except BrokerUnavailable:
            outcome = "broker_unavailable"
            raise
        except Saturated:
            outcome = "saturated"
            raise
        finally:
            self._observer.rpc_finished(queue, outcome, time.monotonic() - started)

    def _call_raw(self, queue: str, payload: dict[str, Any], timeout: float,
                  deadline: float | None, max_bytes: int) -> bytes:
        self.start()
        if not self._first_attempt_done.is_set():
            # Broker state "starting": wait briefly for the first attempt.
            self._first_attempt_done.wait(self._connect_wait)
        if not self._connected:
            raise BrokerUnavailable()
        if self._transport.consumer_count(queue) == 0:
            raise NoConsumer(self._peers.get(queue, "the peer"))
        if deadline is None:
            deadline = time.monotonic() + timeout
        self._slots.acquire(deadline)
        try:
            return self._exchange(queue, payload, timeout, deadline, max_bytes)
        finally:
            self._slots.release()

    def _exchange(self, queue: str, payload: dict[str, Any], timeout: float,
                  deadline: float, max_bytes: int) -> bytes:
        with self._lock:
            if not self._connected:
                raise BrokerUnavailable()
            # Minted under the lock: the token is that of the connection the call
            # is registered against, and a disconnect fails the call with it.
            call_id = new_call_id(self._owner) if self._owner else str(uuid.uuid4())
            call = self._pending[call_id] = PendingCall(call_id, queue, max_bytes)
        self._observer.rpc_inflight(1)
        try:
            message = dict(payload, request_id=call_id, timestamp=time.time())
            request = OutgoingRequest(
                queue=queue, body=json.dumps(message).encode(), call_id=call_id,
                request_id=current_request_id(),
                expiration_ms=expiration_ms(timeout, deadline - time.monotonic()))
            self._transport.publish(request, self._on_publish_failure)
            self._observer.rpc_published(queue)
            return call.wait(deadline - time.monotonic(), timeout)
        finally:
            with self._lock:
                self._pending.pop(call_id, None)
            self._observer.rpc_inflight(-1)

    def _on_publish_failure(self, call_id: str) -> None:
        with self._lock:
            call = self._pending.get(call_id)
        if call is not None:
            call.fail(BrokerUnavailable())

    # -- broker side (I/O thread) -------------------------------------------

    def on_reply(self, source_queue: str, body: bytes, correlation_id: str | None,
                 relayed: bool = False) -> Routing:
        """Route one reply. Runs in the I/O thread; must not block.

        ``relayed`` is True for a reply another worker forwarded or broadcast to
        us (``source_queue`` is then the fixed queue it was first taken from).
        """
        fixed = source_queue in self._fixed_queues
        self._observer.reply_received("relayed" if relayed else "fixed" if fixed else "own")
        # Lock-free reads: a single dict.get is atomic under the GIL, and a call
        # removed concurrently only means it is decided after nobody waits.
        call = self._pending.get(correlation_id) if correlation_id else None
        if len(body) > (call.max_bytes if call is not None else self._largest_reply_bytes):
            return self._too_large(call, source_queue, len(body))
        call_id = correlation_id
        if call is None:
            call_id = call_id_of(body) or correlation_id
            call = self._pending.get(call_id) if call_id else None
            if call_id is None:
                return self._drop("unroutable", source_queue)
        if call is not None:
            if len(body) > call.max_bytes:
                return self._too_large(call, source_queue, len(body))
            if call.resolve(body):
                return DELIVERED
            # A duplicate that arrived before its request left the pending map.
            return self._drop("duplicate", source_queue)
        token = owner_token(call_id)
        if relayed:
            # Ours but finished (a forward that came late), or a broadcast copy for another.
            return self._drop("unknown" if token == self._owner else "not_owner", source_queue)
        if not fixed or token == self._owner:
            return self._drop("unknown", source_queue)
        if token is not None:
            self._observer.reply_rerouted("direct")
            return Routing(ReplyOutcome.FORWARD, reply_queue_name(token))
        if is_legacy_id(call_id):
            self._observer.reply_rerouted("broadcast")
            return BROADCAST
        # Neither ours nor any version's: nobody can be waiting for it.
        return self._drop("unroutable", source_queue)

    def _too_large(self, call: PendingCall | None, source_queue: str, size: int) -> Routing:
        # Never parsed: a huge reply would cost every waiting thread its memory.
        if call is not None:
            call.fail(RemoteError("reply too large"))
        return self._drop("too_large", source_queue,
                          logging.WARNING if call is not None else logging.DEBUG,
                          reply_bytes=size, matched=call is not None)

    def _drop(self, reason: str, source_queue: str, level: int = logging.DEBUG,
              **details: Any) -> Routing:
        self._observer.reply_dropped(reason)
        log.log(level, "reply dropped", extra={"queue": source_queue, "reason": reason,
                                               **details})
        return DROPPED

    def on_connection_change(self, connected: bool, owner: str = "") -> None:
        """Record the connection state and its owner token; on loss fail every pending call."""
        with self._lock:
            self._connected = connected
            self._owner = owner if connected else ""
        self._first_attempt_done.set()
        self._observer.broker_connected(connected)
        if not connected:
            self._fail_all(BrokerUnavailable())
        for listener in self._listeners:
            listener(connected)

    def _fail_all(self, error: RpcError) -> None:
        with self._lock:
            calls = list(self._pending.values())
        for call in calls:
            call.fail(error)
