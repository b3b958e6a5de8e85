"""The pika I/O thread: connect, declare, publish, consume, reconnect.

pika 1.4's ``BlockingConnection`` is not thread-safe: its only thread-safe
method is ``add_callback_threadsafe``. So one daemon thread per worker process
(``amqp-io``) creates the connection, owns it and its single channel, and loops
``process_data_events(time_limit=1)``. That loop also services heartbeats when
no HTTP traffic comes. Request threads hand publishes over through an outbox
(``outbox.py``): the first of a batch wakes the I/O thread with
``add_callback_threadsafe``, and this thread then publishes the whole batch.
Consumer callbacks and connection changes are reported to the RPC logic
(``client.RpcClient``) from this thread.

Queues: the request and results queues are shared with the existing KubeSage
peers and declared exactly as they declare them (``pika_connection.py``). Each
connection also declares its own reply queue, ``exclusive`` (deleted by the
broker with the connection, so a crashed worker leaves nothing behind, and after a
reconnect nothing is owed to the old queue: every call pending at the disconnect
has been failed). It is named after the connection's owner token
(``call_ids.py``), so a reply on a fixed results queue that belongs to another
worker goes to exactly its owner (``relay.py``); it is also bound to a fanout
exchange, the fallback for ids that name no owner (see ``client.py``).

Listeners (``listen``, ``fanout.py``): the auth events. Consumer presence (is
anyone consuming a request queue?): ``consumer_presence.py``.

Nodes: ``RABBITMQ_HOST`` may name several (a RabbitMQ cluster). Every
connection, the first and each after a loss (a node closing connections for
shutdown with 320 CONNECTION_FORCED included), tries them in order, each
attempt bounded by ``RABBITMQ_CONNECT_TIMEOUT``; the node in use is
:attr:`PikaTransport.node` (``/ready``), and each reconnect is counted by node.
A failed attempt is logged once per node and reason until a connection
succeeds (a TLS verification failure says why: ``broker_tls.py``), so a node
that stays down does not write a line every retry.

Reconnects use a capped exponential back-off (0.25 s doubling to 2 s) between
rounds over the nodes: the cap is small so a worker is serving again within
seconds of the broker's return.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from ..config import Settings
from ..errors import BrokerUnavailable
from ..observability.observer import Observer
from .consumer_presence import ConsumerPresence
from .fanout import call_quietly, declare_listener
from .outbox import Outbox
from .broker_tls import tls_failure
from .pika_connection import (close_quietly, connection_parameters, declare_reply_queue,
                              declare_shared_queues, node_of, request_properties)
from .relay import on_returned, relay, relayed_from
from .transport import DROPPED, OutgoingRequest, Routing

log = logging.getLogger(__name__)

_MIN_DELAY, _MAX_DELAY = 0.25, 2.0


class PikaTransport:
    """One broker connection owned by one I/O thread. See the module docstring."""

    def __init__(self, settings: Settings, observer: Observer | None = None,
                 peers: dict[str, str] | None = None) -> None:
        self._settings = settings
        self._observer = observer or Observer()
        self._listeners: dict[str, tuple[Callable[[bytes], None],
                                         Callable[[], None] | None]] = {}
        self._gap_handlers: list[Callable[[], None]] = []
        self._ever_connected = False
        self._params = connection_parameters(settings)
        self._observer.broker_nodes([node_of(params) for params in self._params])
        self._request_queues = settings.request_queues
        self._result_queues = settings.result_queues
        self._reroute_ttl_ms = str(int(settings.longest_reply_wait * 1000))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._reply_queue = ""
        self._node = ""
        self._failures_logged: dict[str, str] = {}  # node -> the failure last logged
        self._thread: threading.Thread | None = None
        self._on_reply: Callable[..., Routing] | None = None
        self._cancelled = False
        self._on_change: Callable[..., None] | None = None
        self._presence = ConsumerPresence(peers)
        self._outbox: Outbox[tuple[OutgoingRequest, Callable[[str], None]]] = Outbox()

    @property
    def reply_queue(self) -> str:
        """This connection's reply queue name ('' while disconnected)."""
        return self._reply_queue

    @property
    def node(self) -> str:
        """``host:port`` of the broker node this worker is connected to ('' while not)."""
        return self._node

    # -- called from other threads ------------------------------------------

    def listen(self, exchange: str, handler: Callable[[bytes], None],
               on_gap: Callable[[], None] | None = None,
               on_foreign: Callable[[], None] | None = None) -> None:
        """Call ``handler(body)`` in the I/O thread for every message on fanout ``exchange``.

        Call before :meth:`start`. ``on_gap()`` is called on every reconnect: the
        messages published while the connection was down were missed. A message
        that reached the queue other than through ``exchange`` is dropped and
        reported to ``on_foreign()`` (``fanout.py``). All must be short and must
        not raise (an exception is logged and the message dropped).
        """
        self._listeners[exchange] = (handler, on_foreign)
        if on_gap is not None:
            self._gap_handlers.append(on_gap)

    def start(self, on_reply: Callable[..., Routing],
              on_connection_change: Callable[..., None]) -> None:
        """Start the I/O thread; it connects, and reconnects until :meth:`close`."""
        self._on_reply, self._on_change = on_reply, on_connection_change
        self._thread = threading.Thread(target=self._run, name="amqp-io", daemon=True)
        self._thread.start()

    def publish(self, request: OutgoingRequest, on_failure: Callable[[str], None]) -> None:
        """Hand one publish to the I/O thread (``outbox.py``). Raises BrokerUnavailable
        when disconnected."""
        with self._lock:
            connection = self._connection
            if connection is None:
                raise BrokerUnavailable()
            try:
                self._outbox.put((request, on_failure),
                                 lambda: connection.add_callback_threadsafe(self._drain))
            except pika.exceptions.ConnectionWrongStateError:
                raise BrokerUnavailable() from None

    def consumer_count(self, queue: str) -> int | None:
        """The consumer count of ``queue``, at most a second or two old, or None if unknown."""
        return self._presence.count(queue, self._hand_over)

    def _hand_over(self, work: Callable[[Any], None]) -> bool:
        """Run ``work(connection)`` in the I/O thread soon; False when not connected."""
        with self._lock:
            connection = self._connection
            if connection is None:
                return False
            try:
                connection.add_callback_threadsafe(functools.partial(work, connection))
            except pika.exceptions.ConnectionWrongStateError:
                return False
            return True

    def close(self, timeout: float) -> None:
        """Stop reconnecting, close the connection cleanly, and wait for the thread."""
        self._stopping.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)  # wake the loop now
            except pika.exceptions.ConnectionWrongStateError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the I/O thread ------------------------------------------------------

    def _run(self) -> None:
        delay = _MIN_DELAY
        while not self._stopping.is_set():
            failure = ""
            try:
                self._connect()
                delay = _MIN_DELAY
                self._loop()
            except (pika.exceptions.AMQPError, OSError) as error:
                failure = type(error).__name__
                # a failed attempt was logged by _open or _connect, a loss by _disconnect
            except Exception as error:  # never let the I/O thread die: the worker would go deaf
                failure = type(error).__name__
                log.error("unexpected error in the broker I/O thread",
                          extra={"event": "broker_io_error", "error_type": type(error).__name__})
            finally:
                self._disconnect(failure)
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, _MAX_DELAY)

    def _open(self) -> tuple[pika.BlockingConnection, str]:
        """A connection to the first node of the list that answers; raises the last failure."""
        failure: BaseException | None = None
        for params in self._params:
            if self._stopping.is_set():
                break
            try:
                return pika.BlockingConnection(params), node_of(params)
            except Exception as error:  # pika's stack timeout is not an AMQPError
                failure = error
                self._log_failure(error, node_of(params))
        raise pika.exceptions.AMQPConnectionError(
            type(failure).__name__ if failure else "stopping")

    def _connect(self) -> None:
        connection, node = self._open()
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=256)
            for queue, consumers in declare_shared_queues(
                    channel, self._request_queues, self._result_queues).items():
                self._presence.record(queue, consumers)
            token, reply_queue = declare_reply_queue(channel, self._settings.reply_exchange)
            channel.add_on_return_callback(functools.partial(on_returned, self._observer))
            for number, (exchange, (handler, on_foreign)) in enumerate(self._listeners.items()):
                declare_listener(channel, exchange, f"{reply_queue}.listener{number}", handler,
                                 on_foreign)
            # The broker cancels a consumer whose queue is deleted; pika only drops it.
            # We must notice, or replies on that queue would go unread for good.
            self._cancelled = False
            channel.add_on_cancel_callback(self._on_consumer_cancelled)
            # Consume before any publish (replies cannot arrive before we listen).
            channel.basic_consume(reply_queue, self._on_own_reply, auto_ack=True)
            for queue in self._result_queues:
                channel.basic_consume(queue, functools.partial(self._on_fixed_reply, queue),
                                      auto_ack=False)
        except BaseException as error:
            # Connected, but the set-up failed (e.g. ACCESS_REFUSED on a declare).
            if isinstance(error, (pika.exceptions.AMQPError, OSError)):
                self._log_failure(error, node)
            close_quietly(connection)
            raise
        with self._lock:
            self._connection, self._channel, self._reply_queue = connection, channel, reply_queue
            self._node = node
        self._failures_logged.clear()
        log.info("broker connected", extra={"event": "broker_connected", "broker": node,
                                            "reply_queue": reply_queue})
        if self._ever_connected:
            self._observer.broker_reconnected(node)
            for on_gap in self._gap_handlers:
                call_quietly(on_gap)
        self._ever_connected = True
        # Set by start().
        assert self._on_change is not None  # nosec B101
        self._on_change(True, token)

    def _loop(self) -> None:
        connection, channel = self._connection, self._channel
        # Set by _connect().
        assert connection is not None and channel is not None  # nosec B101
        while not self._stopping.is_set():
            connection.process_data_events(time_limit=1)
            self._presence.refresh_in_use(connection)
            # A channel the broker closed (e.g. a publish to a deleted exchange) or a
            # cancelled consumer leaves the connection up but the worker deaf or mute:
            # treat both as a lost connection, so everything is failed and redeclared.
            if not channel.is_open:
                raise pika.exceptions.ChannelClosed(0, "channel closed by the broker")
            if self._cancelled:
                raise pika.exceptions.ConsumerCancelled("consumer cancelled by the broker")

    def _disconnect(self, failure: str = "") -> None:
        with self._lock:
            connection, self._connection, self._channel = self._connection, None, None
            self._reply_queue, node, self._node = "", self._node, ""
        for request, on_failure in self._outbox.take():  # handed over, never published
            on_failure(request.call_id)
        self._presence.reset()  # unknown until the next connection says
        if connection is None:
            if self._on_change is not None:
                self._on_change(False)
            return
        was_open = connection.is_open
        close_quietly(connection)
        if was_open and self._stopping.is_set():
            log.info("broker connection closed", extra={"event": "broker_closed"})
        else:
            log.warning("broker connection lost", extra={"event": "broker_disconnected",
                                                         "broker": node,
                                                         "error_type": failure or None})
        if self._on_change is not None:
            self._on_change(False)

    def _log_failure(self, error: BaseException, node: str) -> None:
        """One line per node and reason until a connection succeeds; a TLS failure says why."""
        if self._stopping.is_set():
            return
        reason = tls_failure(error)
        if self._failures_logged.get(node) == (reason or type(error).__name__):
            return
        self._failures_logged[node] = reason or type(error).__name__
        if reason is not None:
            log.error("broker TLS verification failed, not connecting to this node: %s", reason,
                      extra={"event": "broker_tls_failed", "broker": node, "reason": reason})
            return
        log.warning("broker connection failed", extra={
            "event": "broker_unreachable", "error_type": type(error).__name__, "broker": node})

    # -- pika callbacks (I/O thread) ---------------------------------------

    def _route(self, source: str, body: bytes, correlation_id: str | None,
               relayed: bool) -> Routing:
        """Hand a reply to the RPC logic. A reply that makes it fail is dropped, never
        raised: raised here it would tear the connection down, and, unacked, come back
        to poison the next consumer in every worker."""
        # Set by start().
        assert self._on_reply is not None  # nosec B101
        try:
            return self._on_reply(source, body, correlation_id, relayed)
        except Exception as error:
            log.warning("reply could not be routed, dropped", extra={
                "event": "reply_unroutable", "queue": source,
                "error_type": type(error).__name__})
            return DROPPED

    def _on_consumer_cancelled(self, method_frame: Any) -> None:
        """Called by pika when the broker cancels one of our consumers."""
        self._cancelled = True

    def _drain(self) -> None:
        """Publish what request threads handed over. Called by pika in the I/O thread."""
        for request, on_failure in self._outbox.take():
            self._publish(request, on_failure)

    def _publish(self, request: OutgoingRequest, on_failure: Callable[[str], None]) -> None:
        """Publish one request (I/O thread)."""
        channel = self._channel
        if channel is None or not channel.is_open:
            on_failure(request.call_id)
            return
        properties = request_properties(request, self._reply_queue)
        try:
            channel.basic_publish(exchange="", routing_key=request.queue, body=request.body,
                                  properties=properties)
        except Exception:
            on_failure(request.call_id)
            raise

    def _on_own_reply(self, channel: BlockingChannel, method: Basic.Deliver,
                      properties: BasicProperties, body: bytes) -> None:
        """Called by pika for each message on this worker's reply queue (auto-acked)."""
        source = relayed_from(properties)
        self._route(source or self._reply_queue, body, properties.correlation_id,
                    source is not None)

    def _on_fixed_reply(self, queue: str, channel: BlockingChannel, method: Basic.Deliver,
                        properties: BasicProperties, body: bytes) -> None:
        """Called by pika for each message on a shared results queue; sends others' replies on."""
        routing = self._route(queue, body, properties.correlation_id, False)
        relay(channel, routing, queue, properties, body,
              reply_exchange=self._settings.reply_exchange, ttl_ms=self._reroute_ttl_ms)
        channel.basic_ack(method.delivery_tag)
