"""The pika side of the stand-in peers: connect, declare, consume, reply, reconnect.

One thread owns one BlockingConnection and loops `process_data_events`; every
delayed reply is a `connection.call_later` timer on that same loop, so a slow
agent never blocks the others and nothing sleeps per message. Other threads
touch the connection only through `add_callback_threadsafe` (the one thread-safe
method pika 1.4.4 has), and only to wake the loop up when stopping.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pika
import pika.exceptions

from .behaviour import Behaviour, Reply
from .config import REPLY_STYLES, PeerConfig

logger = logging.getLogger("devpeers")

KINDS = ("auth", "namespaces", "agents", "operations")
_LOOP_TICK = 0.25          # seconds; bounds how late a stop request or stats write can be
_STATS_INTERVAL = 1.0      # the stats file is rewritten at most this often
_FIRST_RECONNECT_DELAY = 0.1


class DevPeers:
    """Development stand-in for the User Service and the Onboarding Service.

    `start()` runs the peers in a background thread (tests, benchmarks); `run()`
    runs them in the calling thread until `request_stop()`/`stop()`.
    """

    def __init__(self, config: Optional[PeerConfig] = None) -> None:
        self.config = config if config is not None else PeerConfig()
        self.config.validate()
        self._stop_requested = False           # plain flag: safe to set from anywhere
        self._consuming = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._connection: Any = None
        self._last_error: Optional[str] = None
        self._alternate = False
        self._unacked_tag = 0                  # highest delivery tag not yet acked
        self._lock = threading.Lock()
        self._counters: Dict[str, int] = {name: 0 for name in _counter_names()}
        self._counters_version = 0
        self._stats_written_version = -1
        self._stats_written_at = 0.0
        self._started_at = time.time()

    # ----- public control -----------------------------------------------------------------

    def start(self, timeout: float = 10.0, wait: bool = True) -> "DevPeers":
        """Run in a daemon thread; with `wait`, return only once the queues are consumed.

        Raises RuntimeError (after stopping the thread) if that takes longer than
        `timeout`, so a test fails fast with the broker's error instead of hanging.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("DevPeers already started")
        self._stop_requested = False
        self._thread = threading.Thread(target=self.run, name="devpeers", daemon=True)
        self._thread.start()
        if wait and not self._consuming.wait(timeout):
            error = self._last_error or "no error reported"
            self.stop()
            raise RuntimeError(f"devpeers did not start consuming within {timeout}s: {error}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and close its connection; safe to call twice."""
        self.request_stop()
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)   # wake the loop now
            # The connection may already be closed.
            except Exception:  # nosec B110
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("devpeers thread did not stop within %.1fs", timeout)

    def request_stop(self) -> None:
        """Ask the loop to finish within a tick; only sets a flag (signal-handler safe)."""
        self._stop_requested = True

    def wait_consuming(self, timeout: float) -> bool:
        """Wait until the peers consume their queues (again, after a reconnect)."""
        return self._consuming.wait(timeout)

    def set_reply_style(self, style: str) -> None:
        """Change where replies go, effective from the next request."""
        if style not in REPLY_STYLES:
            raise ValueError(f"reply style must be one of {', '.join(REPLY_STYLES)}")
        self.config.reply_style = style

    @property
    def is_running(self) -> bool:
        """True while the background thread started by `start()` is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def is_consuming(self) -> bool:
        """True while the peers hold a connection and consume their request queues."""
        return self._consuming.is_set()

    @property
    def last_error(self) -> Optional[str]:
        """The last connection error, for diagnostics (never holds a message body)."""
        return self._last_error

    @property
    def counters(self) -> Dict[str, Any]:
        """A snapshot of the request and reply counters."""
        with self._lock:
            snapshot: Dict[str, Any] = dict(self._counters)
        snapshot["uptime_s"] = round(time.time() - self._started_at, 3)
        return snapshot

    def __enter__(self) -> "DevPeers":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped, reconnecting with a capped back-off when the broker drops."""
        delay = _FIRST_RECONNECT_DELAY
        while not self._stop_requested:
            try:
                self._serve()
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("devpeers: broker connection lost (%s); retrying in %.1fs",
                               self._last_error, delay)
            except Exception as exc:  # a dev tool keeps serving
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("devpeers: unexpected error; retrying in %.1fs", delay)
            finally:
                if self._consuming.is_set():
                    delay = _FIRST_RECONNECT_DELAY     # we were up: start the back-off again
                self._consuming.clear()
                self._close_connection()
            if self._stop_requested:
                break
            self._sleep(delay)
            delay = min(delay * 2, self.config.max_reconnect_delay)
        self._write_stats(force=True)

    def _serve(self) -> None:
        config = self.config
        params = pika.ConnectionParameters(
            host=config.host, port=config.port, virtual_host=config.vhost,
            credentials=pika.PlainCredentials(config.user, config.password),
            heartbeat=config.heartbeat, connection_attempts=1, socket_timeout=5,
            blocked_connection_timeout=30,
            client_properties={"connection_name": f"devpeers {config.auth_request_queue}"},
        )
        connection = pika.BlockingConnection(params)
        self._connection = connection
        channel = connection.channel()
        for queue in config.queue_names():
            # durable, no other arguments: anything else fails with PRECONDITION_FAILED
            # against the queues the real peers and the service declare.
            channel.queue_declare(queue=queue, durable=True)
        channel.basic_qos(prefetch_count=config.prefetch)
        behaviour = Behaviour(config)
        handlers: Dict[str, Callable[[Dict[str, Any]], List[Reply]]] = {
            "auth": behaviour.auth,
            "namespaces": behaviour.namespaces,
            "agents": behaviour.agents,
            "operations": behaviour.operations,
        }
        for kind, queue in config.request_queues().items():
            channel.basic_consume(
                queue=queue,
                on_message_callback=functools.partial(
                    self._on_request, connection, kind, handlers[kind]),
            )
        self._count("connections")
        self._consuming.set()
        logger.info("devpeers: consuming %s", ", ".join(config.request_queues().values()))
        self._unacked_tag = 0
        try:
            while not self._stop_requested:
                connection.process_data_events(time_limit=_LOOP_TICK)
                self._ack_handled(channel)
                self._write_stats()
        finally:
            if channel.is_open:
                self._ack_handled(channel)   # else the broker redelivers answered requests

    def _ack_handled(self, channel: Any) -> None:
        """Ack every request handled so far with one `multiple=True` ack.

        BlockingChannel flushes the socket on every call, so one ack per loop pass
        instead of one per message roughly halves the writes at benchmark rates.
        Requests are acked once handled, not once answered: a delayed or silent
        answer must not hold a prefetch slot.
        """
        if self._unacked_tag:
            channel.basic_ack(delivery_tag=self._unacked_tag, multiple=True)
            self._unacked_tag = 0

    def _on_request(self, connection: Any, kind: str,
                    handler: Callable[[Dict[str, Any]], List[Reply]],
                    channel: Any, method: Any, properties: Any, body: bytes) -> None:
        """Called by pika for every request; replies now or through a call_later timer."""
        self._unacked_tag = method.delivery_tag      # acked in bulk by the loop
        self._count("requests_" + kind, "requests_total")
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._count("bad_requests")
            logger.debug("devpeers: dropped a %s request that is not a JSON object", kind)
            return
        if "request_id" not in request and properties.correlation_id:
            request["request_id"] = properties.correlation_id
        try:
            replies = handler(request)
        except Exception:  # one odd request must not stop the peers
            self._count("handler_errors")
            logger.exception("devpeers: failed to answer a %s request", kind)
            return
        if not replies:
            self._count("no_reply")
            return
        destination = self._destination(kind, properties.reply_to)
        correlation_id = properties.correlation_id or request.get("request_id")
        for reply in replies:
            send = functools.partial(self._send, channel, kind, destination,
                                     correlation_id, reply)
            if reply.delay > 0:
                connection.call_later(reply.delay, send)
            else:
                send()

    def _destination(self, kind: str, reply_to: Optional[str]) -> str:
        style = self.config.reply_style
        if style == "alternate":
            self._alternate = not self._alternate
            style = "reply_to" if self._alternate else "results"
        if style == "reply_to" and reply_to:
            return reply_to
        return self.config.result_queues()[kind]

    def _send(self, channel: Any, kind: str, destination: str,
              correlation_id: Optional[str], reply: Reply) -> None:
        if not channel.is_open:
            self._count("replies_dropped")
            return
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=1,
            correlation_id=correlation_id if reply.correlate else None,
        )
        channel.basic_publish(exchange="", routing_key=destination, body=reply.body,
                              properties=properties)
        self._count("replies_" + kind, "replies_total")

    # ----- helpers ------------------------------------------------------------------------

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counters[name] += 1
            self._counters_version += 1

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing a broken connection may fail
                logger.debug("devpeers: error while closing the connection", exc_info=True)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    def _write_stats(self, force: bool = False) -> None:
        """Rewrite the stats file atomically, at most once a second and only on change."""
        path = self.config.stats_file
        if not path:
            return
        now = time.monotonic()
        if not force and (now - self._stats_written_at < _STATS_INTERVAL
                          or self._counters_version == self._stats_written_version):
            return
        self._stats_written_at = now
        self._stats_written_version = self._counters_version
        snapshot = self.counters
        snapshot["time"] = time.time()
        directory = os.path.dirname(os.path.abspath(path))
        temporary: Optional[str] = None
        try:
            fd, temporary = tempfile.mkstemp(prefix=".devpeers-stats-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(snapshot, handle)
            os.replace(temporary, path)
        except OSError as exc:
            logger.warning("devpeers: cannot write stats file %s: %s", path, exc)
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)


def _counter_names() -> List[str]:
    names = ["requests_total", "replies_total", "no_reply", "bad_requests",
             "handler_errors", "replies_dropped", "connections"]
    for kind in KINDS:
        names += ["requests_" + kind, "replies_" + kind]
    return names
