"""The RPC logic over a fake transport: routing, timeouts, connection loss, no leaks."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from cluster_service.observability.request_context import request_id_var
from cluster_service.errors import BrokerUnavailable, RemoteError, RpcTimeout
from cluster_service.rpc.client import RpcClient
from cluster_service.rpc.pending import PendingCall
from cluster_service.rpc.transport import OutgoingRequest, ReplyOutcome
from cluster_service.rpc.call_ids import new_call_id, new_token, owner_token, \
    reply_queue_name

from ...support.fake_transport import FakeTransport
from ...support.recording import RecordingObserver
from ...support.service import wait_for

QUEUE = "requests"
OTHER_QUEUE = "other_requests"
RESULTS = "results"


def echo(body: dict[str, Any]) -> list[tuple[Any, float]]:
    return [({"request_id": body["request_id"], "echo": body.get("n")}, 0)]


def silent(body: dict[str, Any]) -> None:
    return None


def reply_bytes(request_id: str, **fields: Any) -> bytes:
    return json.dumps({"request_id": request_id, **fields}).encode()


class Harness:
    """An RpcClient over a FakeTransport with a recording observer."""

    def __init__(self, transport: FakeTransport | None = None,
                 connect_wait: float = 2.0) -> None:
        self.transport = transport or FakeTransport()
        self.observer = RecordingObserver()
        self.client = RpcClient(self.transport, fixed_queues=(RESULTS,),
                                connect_wait=connect_wait,
                                observer=self.observer)

    def call_in_thread(self, queue: str = QUEUE, timeout: float = 5.0,
                       payload: dict[str, Any] | None = None) -> "Background":
        return Background(lambda: self.client.call(queue, payload or {}, timeout))

    def last_request(self) -> OutgoingRequest:
        wait_for(lambda: self.transport.published, 2, what="a publish")
        return self.transport.published[-1]

    def wait_pending(self, count: int) -> None:
        wait_for(lambda: self.client.pending_count == count, 2, what=f"{count} pending")


class Background:
    """Runs one call in a thread and keeps its result or exception and when it ended."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result = work()
        except BaseException as error:  # handed to the test
            self.error = error
        self.ended_at = time.monotonic()

    def join(self, timeout: float = 5.0) -> "Background":
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call did not finish"
        return self


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    h.transport.responders[QUEUE] = echo
    h.client.start()
    return h


class TestReplies:
    def test_reply_to_reply_queue_is_matched_by_correlation_id(self, harness: Harness) -> None:
        assert harness.client.call(QUEUE, {"n": 1}, 2) == {
            "request_id": harness.transport.published[0].call_id, "echo": 1}
        assert harness.client.pending_count == 0
        assert harness.observer.outcomes[(QUEUE, "ok")] == 1
        assert harness.observer.published[QUEUE] == 1

    def test_reply_on_fixed_queue_is_matched_by_body_request_id(self, harness: Harness) -> None:
        harness.transport.reply_via_queue[QUEUE] = RESULTS
        assert harness.client.call(QUEUE, {"n": 2}, 2)["echo"] == 2
        assert harness.transport.rerouted == []

    def test_unknown_correlation_id_falls_back_to_body_request_id(self,
                                                                  harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request = harness.last_request()
        outcome = harness.transport.deliver("reply.fake", reply_bytes(request.call_id, ok=1),
                                            "stale-correlation-id")
        assert outcome is ReplyOutcome.DELIVERED
        assert call.join().result["ok"] == 1

    def test_rerouted_reply_reaches_its_owner(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request = harness.last_request()
        outcome = harness.transport.deliver("reply.fake", reply_bytes(request.call_id, ok=2),
                                            None, relayed=True)
        assert outcome is ReplyOutcome.DELIVERED
        assert call.join().result["ok"] == 2

    def test_concurrent_waiters_each_get_their_own_reply(self, harness: Harness) -> None:
        rng = random.Random(7)

        def delayed_echo(body: dict[str, Any]) -> list[tuple[Any, float]]:
            return [({"request_id": body["request_id"], "echo": body["n"]},
                     rng.uniform(0, 0.05))]

        harness.transport.responders[QUEUE] = delayed_echo
        harness.transport.responders[OTHER_QUEUE] = delayed_echo
        harness.transport.reply_via_queue[OTHER_QUEUE] = RESULTS  # matched by body only

        def one(n: int) -> int:
            queue = QUEUE if n % 2 else OTHER_QUEUE
            return int(harness.client.call(queue, {"n": n}, 5)["echo"])

        with ThreadPoolExecutor(max_workers=40) as pool:
            assert list(pool.map(one, range(200))) == list(range(200))
        assert harness.client.pending_count == 0
        assert harness.observer.inflight == 0
        assert sum(harness.observer.dropped.values()) == 0


class TestUnroutableReplies:
    def test_another_workers_reply_on_a_fixed_queue_goes_to_its_owner_only(
            self, harness: Harness) -> None:
        other = new_token()
        body = reply_bytes(new_call_id(other))
        assert harness.transport.deliver(RESULTS, body, None) is ReplyOutcome.FORWARD
        assert harness.transport.forwarded == [(reply_queue_name(other), body)]
        assert harness.transport.rerouted == []
        assert harness.observer.routes == {"direct": 1}
        assert harness.observer.received == {"fixed": 1}

    def test_a_legacy_id_on_a_fixed_queue_is_broadcast(self, harness: Harness) -> None:
        """A version-4 id (an earlier version of the service, during a rolling update)
        names no owner: the fanout fallback."""
        body = reply_bytes(str(uuid.uuid4()))
        assert harness.transport.deliver(RESULTS, body, None) is ReplyOutcome.BROADCAST
        assert harness.transport.rerouted == [body]
        assert harness.observer.routes == {"broadcast": 1}

    @pytest.mark.parametrize("request_id", [
        "not-a-uuid", "", "x" * 36, str(uuid.uuid1()), str(uuid.uuid4()).upper() + "0",
        # version 8, but not our layout (marker differs)
        "0123abcd-4567-8abc-9def-0123456789ab",
        "{" + str(uuid.uuid4()) + "}"])
    def test_a_garbage_or_foreign_id_on_a_fixed_queue_is_dropped(
            self, harness: Harness, request_id: str) -> None:
        body = reply_bytes(request_id)
        assert harness.transport.deliver(RESULTS, body, None) is ReplyOutcome.DROPPED
        assert harness.transport.rerouted == [] and harness.transport.forwarded == []
        assert harness.observer.dropped == {"unroutable": 1}

    def test_own_late_reply_on_a_fixed_queue_is_not_forwarded_to_itself(
            self, harness: Harness) -> None:
        body = reply_bytes(new_call_id(harness.transport.token))
        assert harness.transport.deliver(RESULTS, body, None) is ReplyOutcome.DROPPED
        assert harness.transport.forwarded == []
        assert harness.observer.dropped == {"unknown": 1}

    def test_forwarded_reply_reaches_its_owner(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request = harness.last_request()
        outcome = harness.transport.deliver(RESULTS, reply_bytes(request.call_id, ok=3),
                                            None, relayed=True)
        assert outcome is ReplyOutcome.DELIVERED
        assert call.join().result["ok"] == 3
        assert harness.observer.received == {"relayed": 1}

    def test_relayed_reply_is_never_relayed_again(self, harness: Harness) -> None:
        for request_id in (str(uuid.uuid4()), new_call_id(new_token())):
            assert harness.transport.deliver(RESULTS, reply_bytes(request_id), None,
                                             relayed=True) is ReplyOutcome.DROPPED
        assert harness.transport.rerouted == [] and harness.transport.forwarded == []
        assert harness.observer.dropped == {"not_owner": 2}

    def test_unknown_reply_on_own_queue_is_dropped(self, harness: Harness) -> None:
        request_id = str(uuid.uuid4())
        outcome = harness.transport.deliver("reply.fake", reply_bytes(request_id), request_id)
        assert outcome is ReplyOutcome.DROPPED
        assert harness.observer.dropped == {"unknown": 1}
        assert harness.observer.rerouted == 0

    @pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"request_id": 5}', b"{}"])
    def test_reply_without_any_request_id_is_dropped(self, harness: Harness,
                                                     body: bytes) -> None:
        assert harness.transport.deliver(RESULTS, body, None) is ReplyOutcome.DROPPED
        assert harness.observer.dropped == {"unroutable": 1}
        assert harness.transport.rerouted == []

    def test_late_reply_after_timeout_is_dropped(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        with pytest.raises(RpcTimeout):
            harness.client.call(QUEUE, {}, 0.05)
        request_id = harness.transport.published[0].call_id
        late = reply_bytes(request_id)
        assert harness.transport.deliver("reply.fake", late, request_id) \
            is ReplyOutcome.DROPPED
        # On a fixed queue it names this worker as its owner: dropped, not forwarded.
        assert harness.transport.deliver(RESULTS, late, None) is ReplyOutcome.DROPPED
        # Forwarded to us by another worker after the timeout: dropped as well.
        assert harness.transport.deliver(RESULTS, late, None, relayed=True) \
            is ReplyOutcome.DROPPED
        assert harness.observer.dropped == {"unknown": 3}
        assert harness.transport.forwarded == []
        assert harness.client.pending_count == 0

    def test_duplicate_reply_is_dropped(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request_id = harness.last_request().call_id
        first = reply_bytes(request_id, n=1)
        assert harness.transport.deliver("reply.fake", first, request_id) \
            is ReplyOutcome.DELIVERED
        second = harness.transport.deliver("reply.fake", reply_bytes(request_id, n=2),
                                           request_id)
        assert second is ReplyOutcome.DROPPED
        assert call.join().result["n"] == 1
        # "duplicate" while the waiter is still registered, "unknown" once it left.
        assert sum(harness.observer.dropped.values()) == 1
        assert set(harness.observer.dropped) <= {"duplicate", "unknown"}

    def test_pending_call_resolves_once(self) -> None:
        call = PendingCall("id", QUEUE, 1 << 20)
        assert call.resolve(b"first") is True
        assert call.resolve(b"second") is False
        assert call.wait(0, 1) == b"first"


class TestTimeouts:
    def test_no_reply_times_out_close_to_the_timeout(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        started = time.monotonic()
        with pytest.raises(RpcTimeout) as raised:
            harness.client.call(QUEUE, {}, 0.2)
        assert 0.2 <= time.monotonic() - started < 1.0
        assert raised.value.timeout == 0.2
        assert harness.client.pending_count == 0
        assert harness.observer.inflight == 0
        assert harness.observer.outcomes[(QUEUE, "timeout")] == 1

    def test_next_call_works_after_a_timeout(self, harness: Harness) -> None:
        harness.transport.responders[OTHER_QUEUE] = silent
        with pytest.raises(RpcTimeout):
            harness.client.call(OTHER_QUEUE, {}, 0.05)
        assert harness.client.call(QUEUE, {"n": 3}, 2)["echo"] == 3

    @pytest.mark.parametrize("body", [b"{broken", b"[]", b'"text"'])
    def test_reply_that_is_not_a_json_object_is_a_remote_error(self, harness: Harness,
                                                               body: bytes) -> None:
        harness.transport.responders[QUEUE] = lambda request: [(body, 0)]
        with pytest.raises(RemoteError):
            harness.client.call(QUEUE, {}, 2)
        assert harness.observer.outcomes[(QUEUE, "error")] == 1
        assert harness.client.pending_count == 0


class TestRequestMessage:
    def test_request_carries_ids_timestamp_and_expiration(self, harness: Harness) -> None:
        token = request_id_var.set("http-req-42")
        try:
            harness.client.call(QUEUE, {"command": "x", "n": 1}, 1.5)
        finally:
            request_id_var.reset(token)
        request = harness.transport.published[0]
        body = json.loads(request.body)
        assert request.queue == QUEUE
        assert body["request_id"] == request.call_id
        assert uuid.UUID(request.call_id).version == 8
        assert str(uuid.UUID(request.call_id)) == request.call_id  # canonical form
        assert owner_token(request.call_id) == harness.transport.token
        assert isinstance(body["timestamp"], float)
        assert abs(body["timestamp"] - time.time()) < 5
        assert body["command"] == "x" and body["n"] == 1
        assert request.expiration_ms == 1500
        assert request.request_id == "http-req-42"

    def test_every_request_gets_a_new_id(self, harness: Harness) -> None:
        for _ in range(3):
            harness.client.call(QUEUE, {}, 1)
        assert len({p.call_id for p in harness.transport.published}) == 3


class NeverConnects(FakeTransport):
    """A transport whose first connection attempt is still in progress."""

    def start(self, on_reply: Callable[..., Any],
              on_connection_change: Callable[..., None]) -> None:
        self._on_reply, self._on_change = on_reply, on_connection_change


class FailsPublish(FakeTransport):
    """Accepts the publish, then reports (from 'the I/O thread') that it failed."""

    def publish(self, request: OutgoingRequest, on_failure: Callable[[str], None]) -> None:
        self.published.append(request)
        threading.Timer(0.01, on_failure, (request.call_id,)).start()


class TestBrokerStates:
    def test_call_waits_for_the_first_connection_attempt(self) -> None:
        h = Harness(NeverConnects(), connect_wait=3)
        h.transport.responders[QUEUE] = echo
        timer = threading.Timer(0.2, h.transport.set_connected, (True,))
        timer.start()
        started = time.monotonic()
        assert h.client.call(QUEUE, {"n": 5}, 2)["echo"] == 5
        assert time.monotonic() - started >= 0.15
        timer.join()

    def test_first_attempt_wait_is_bounded(self) -> None:
        h = Harness(NeverConnects(), connect_wait=0.2)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            h.client.call(QUEUE, {}, 5)
        assert 0.2 <= time.monotonic() - started < 1.5
        assert h.transport.published == []

    def test_known_unreachable_broker_fails_at_once(self) -> None:
        h = Harness(FakeTransport(connected=False), connect_wait=5)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            h.client.call(QUEUE, {}, 5)
        assert time.monotonic() - started < 0.5
        assert h.transport.published == []
        assert h.observer.outcomes[(QUEUE, "broker_unavailable")] == 1

    def test_connection_loss_fails_pending_calls_at_once(self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        calls = [harness.call_in_thread(timeout=10) for _ in range(5)]
        harness.wait_pending(5)
        lost_at = time.monotonic()
        harness.transport.set_connected(False)
        for call in calls:
            call.join()
            assert isinstance(call.error, BrokerUnavailable)
            assert call.ended_at - lost_at < 1.0
        assert harness.client.pending_count == 0
        assert harness.observer.inflight == 0
        assert not harness.client.connected

    def test_publish_while_disconnected_is_refused(self, harness: Harness) -> None:
        harness.transport.set_connected(False)
        with pytest.raises(BrokerUnavailable):
            harness.client.call(QUEUE, {}, 5)
        assert harness.transport.published == []
        assert harness.client.pending_count == 0

    def test_transport_refusing_the_publish_is_broker_unavailable(self,
                                                                  harness: Harness) -> None:
        harness.transport._connected = False  # the transport noticed first
        with pytest.raises(BrokerUnavailable):
            harness.client.call(QUEUE, {}, 5)
        assert harness.client.pending_count == 0

    def test_failed_publish_fails_the_call_at_once(self) -> None:
        h = Harness(FailsPublish())
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            h.client.call(QUEUE, {}, 5)
        assert time.monotonic() - started < 1.0
        assert h.client.pending_count == 0

    def test_calls_work_again_after_reconnect(self, harness: Harness) -> None:
        harness.transport.set_connected(False)
        with pytest.raises(BrokerUnavailable):
            harness.client.call(QUEUE, {}, 1)
        harness.transport.set_connected(True)
        assert harness.client.connected
        assert harness.client.call(QUEUE, {"n": 9}, 1)["echo"] == 9
        assert harness.observer.connected == [True, False, True]


class TestLifecycle:
    def test_start_is_idempotent_and_lazy(self) -> None:
        harness = Harness()
        harness.transport.responders[QUEUE] = echo
        starts = []
        original = harness.transport.start

        def counting_start(*args: Any) -> None:
            starts.append(1)
            original(*args)

        harness.transport.start = counting_start  # type: ignore[method-assign,assignment]
        assert starts == []  # nothing connects at construction
        harness.client.start()
        harness.client.start()
        harness.client.call(QUEUE, {}, 1)
        assert starts == [1]

    def test_close_fails_pending_calls_and_closes_the_transport(self,
                                                                harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread(timeout=10)
        harness.wait_pending(1)
        harness.client.close()
        assert isinstance(call.join().error, BrokerUnavailable)
        assert harness.transport.closed
        assert harness.observer.closing == 1  # so the down that follows is not a WARNING
        assert harness.client.pending_count == 0


class TestHostileReplies:
    """Replies built to break the parser: dropped or 502, never raised into the I/O thread."""

    NESTED = b"[" * 100_000  # json.loads raises RecursionError, not ValueError

    def test_deeply_nested_reply_on_a_fixed_queue_is_dropped_not_raised(
            self, harness: Harness) -> None:
        assert harness.transport.deliver(RESULTS, self.NESTED, None) is ReplyOutcome.DROPPED
        assert harness.observer.dropped == {"unroutable": 1}

    def test_deeply_nested_reply_to_a_waiting_call_is_an_agent_error(
            self, harness: Harness) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request = harness.last_request()
        harness.transport.deliver("reply.fake", self.NESTED, request.call_id)
        assert isinstance(call.join().error, RemoteError)

    @pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
    def test_non_json_constants_are_an_agent_error(self, harness: Harness,
                                                   constant: bytes) -> None:
        harness.transport.responders[QUEUE] = silent
        call = harness.call_in_thread()
        request = harness.last_request()
        body = b'{"request_id": "%s", "x": %s}' % (request.call_id.encode(), constant)
        harness.transport.deliver("reply.fake", body, request.call_id)
        assert isinstance(call.join().error, RemoteError)


def test_a_failure_after_the_reply_arrived_does_not_replace_it() -> None:
    call = PendingCall("id", QUEUE, 1 << 20)
    call.resolve(b'{"ok": true}')
    call.fail(BrokerUnavailable())  # e.g. the connection dropped before the waiter woke
    assert call.wait(0.1, 1) == b'{"ok": true}'


class TestNoConsumer:
    """A request queue nobody consumes fails at once: nothing published, no timeout."""

    def test_zero_consumers_is_no_consumer_at_once(self) -> None:
        from cluster_service.errors import NoConsumer

        transport = FakeTransport()
        transport.responders["q"] = silent
        transport.consumers["q"] = 0
        observer = RecordingObserver()
        rpc = RpcClient(transport, peers={"q": "Onboarding Service"}, observer=observer)
        started = time.monotonic()
        with pytest.raises(NoConsumer) as caught:
            rpc.call("q", {}, timeout=5)
        assert time.monotonic() - started < 0.5
        assert "Onboarding Service" in caught.value.message
        assert transport.published == []
        assert dict(observer.outcomes) == {("q", "no_consumer"): 1}

    @pytest.mark.parametrize("count", [None, 1, 3], ids=["unknown", "one", "three"])
    def test_a_consumer_or_an_unknown_count_lets_the_call_through(
            self, count: int | None) -> None:
        transport = FakeTransport()
        transport.responders["q"] = echo
        if count is not None:
            transport.consumers["q"] = count
        assert RpcClient(transport).call("q", {"n": 1}, timeout=2)["echo"] == 1


class TestExpiration:
    """The message TTL is what is left of the call's budget, exact when nothing waited."""

    @pytest.mark.parametrize("timeout, remaining, expected", [
        (4.0, 3.9995, 4000),   # published a moment after the deadline was set
        (4.0, 4.0, 4000),
        (4.0, 2.3, 2300),      # waited 1.7 s in line for a slot
        (4.0, 2.3001, 2400),   # rounded up, never down
        (4.0, 0.0004, 100),
        (0.05, 0.0499, 50),    # never above the timeout
        (4.0, -1.0, 1),        # never below 1 ms
    ])
    def test_rounding(self, timeout: float, remaining: float, expected: int) -> None:
        from cluster_service.rpc.pending import expiration_ms

        assert expiration_ms(timeout, remaining) == expected


def test_racing_outcomes_decide_a_waiting_call_exactly_once() -> None:
    """A reply and a failure from two threads at once: one wins, the waiter sees that one."""
    for _ in range(200):
        call = PendingCall("id", QUEUE, 1 << 20)
        start = threading.Barrier(2)
        won: list[bool] = []

        def reply() -> None:
            start.wait(1)
            won.append(call.resolve(b"{}"))

        thread = threading.Thread(target=reply)
        thread.start()
        start.wait(1)
        call.fail(BrokerUnavailable())
        thread.join(1)
        try:
            outcome = call.wait(1, 1)
        except BrokerUnavailable:
            assert won == [False]
        else:
            assert outcome == b"{}" and won == [True]
