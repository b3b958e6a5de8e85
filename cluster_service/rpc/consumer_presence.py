"""Whether anyone consumes a request queue, known without a round trip per request.

Consumer presence: the I/O thread keeps, per request queue, the consumer count
the broker reports for a passive declare (on a second channel of its own, so
that a 404 for a deleted queue closes only that channel). The declares made at
connect fill it for free; afterwards each queue used in the last
``_KEEP_FRESH_FOR`` seconds is refreshed about once a second, so requests read
a count at most ~1.5 s old without a round trip of their own, and a peer that
comes back is used again within a second or two. A request thread that finds
an entry stale (an idle queue) asks for a refresh and waits for it at most
``_REFRESH_WAIT``. A queue whose count drops to 0 is logged (``peer_missing``)
and its return too (``peer_back``), once per change.

Threads: :meth:`ConsumerPresence.count` runs in request threads; everything
else in the I/O thread, which owns the probe channel. The counts are single
dict operations (atomic under the GIL); the pending refreshes take a lock.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

log = logging.getLogger("cluster_service.rpc.pika_transport")  # the transport's log lines

_FRESH = 1.5  # seconds a consumer count is believed
_REFRESH_EVERY = 1.0  # how often the I/O thread refreshes the counts of queues in use
_KEEP_FRESH_FOR = 30.0  # seconds after its last use a queue is still refreshed
_REFRESH_WAIT = 0.5  # the longest a request thread waits for a stale count's refresh


class ConsumerPresence:
    """The consumer count per request queue, refreshed by the I/O thread."""

    def __init__(self, peers: dict[str, str] | None = None) -> None:
        self._peers = dict(peers or {})  # request queue -> peer name, for the log lines
        self._lock = threading.Lock()
        self._consumers: dict[str, tuple[int, float]] = {}
        self._last_asked: dict[str, float] = {}
        self._refreshing: dict[str, threading.Event] = {}
        self._probe_channel: BlockingChannel | None = None
        self._last_refresh = 0.0

    def count(self, queue: str, hand_over: Callable[[Callable[[Any], None]], bool]) -> int | None:
        """The consumer count of ``queue`` at most ``_FRESH`` seconds old, or None if unknown.

        A stale count is refreshed by the I/O thread (``hand_over`` passes it the
        work, to be called with the connection; False: not connected) and waited
        for at most ``_REFRESH_WAIT``.
        """
        now = time.monotonic()
        self._last_asked[queue] = now
        entry = self._consumers.get(queue)
        if entry is not None and now - entry[1] <= _FRESH:
            return entry[0]
        with self._lock:
            event = self._refreshing.get(queue)
            if event is None:
                event = self._refreshing[queue] = threading.Event()
                if not hand_over(functools.partial(self.refresh, (queue,))):
                    del self._refreshing[queue]
                    return None
        event.wait(_REFRESH_WAIT)
        entry = self._consumers.get(queue)
        if entry is not None and time.monotonic() - entry[1] <= _FRESH + _REFRESH_WAIT:
            return entry[0]
        return None

    # -- the I/O thread ------------------------------------------------------

    def refresh_in_use(self, connection: Any) -> None:
        """About once a second: refresh every queue asked about lately."""
        now = time.monotonic()
        if now - self._last_refresh >= _REFRESH_EVERY:
            self._last_refresh = now
            in_use = [queue for queue, asked in list(self._last_asked.items())
                      if now - asked <= _KEEP_FRESH_FOR]
            self.refresh(tuple(in_use), connection)

    def refresh(self, queues: tuple[str, ...], connection: Any) -> None:
        """Ask the broker how many consumers each queue has, on the probe channel."""
        for queue in queues:
            count: int | None = None
            try:
                if self._probe_channel is None or not self._probe_channel.is_open:
                    self._probe_channel = connection.channel()
                declared = self._probe_channel.queue_declare(queue=queue, passive=True)
                count = declared.method.consumer_count
            except pika.exceptions.ChannelClosedByBroker as error:
                self._probe_channel = None
                if error.reply_code == 404:  # the queue is gone: nobody consumes it
                    count = 0
            if count is not None:
                self.record(queue, count)
            with self._lock:
                event = self._refreshing.pop(queue, None)
            if event is not None:
                event.set()

    def record(self, queue: str, count: int) -> None:
        previous = self._consumers.get(queue)
        self._consumers[queue] = (count, time.monotonic())
        if previous is not None and (previous[0] == 0) == (count == 0):
            return
        peer = self._peers.get(queue, "peer")
        if count == 0:
            log.warning("%s is not consuming its request queue", peer, extra={
                "event": "peer_missing", "peer": peer, "queue": queue})
        elif previous is not None:
            log.info("%s is consuming its request queue again", peer, extra={
                "event": "peer_back", "peer": peer, "queue": queue, "consumers": count})

    def reset(self) -> None:
        """The connection is gone: every count is unknown, and nobody waits for one."""
        with self._lock:
            self._probe_channel = None
            self._consumers.clear()
            refreshing, self._refreshing = self._refreshing, {}
        for event in refreshing.values():
            event.set()
