"""Prometheus metrics, correct under gunicorn's many worker processes.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (``gunicorn.conf.py`` sets and wipes
it before the workers start), every worker writes its values to files there
and a scrape aggregates all of them through ``MultiProcessCollector``, so the
answer does not depend on which worker served the scrape. Without it (tests,
the Flask dev server) the default in-process registry is used.

The metric objects are module-level, as prometheus_client expects; they must be
created after the environment variable is set, which holds because the app is
imported in the workers, after ``gunicorn.conf.py`` has run.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client import multiprocess

from .metric_batch import MetricBatch
from .observer import Observer

_LATENCY_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)

HTTP_REQUESTS = Counter("cluster_http_requests_total", "HTTP requests served",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("cluster_http_request_duration_seconds", "HTTP request latency",
                         ["endpoint"], buckets=_LATENCY_BUCKETS)
AUTH_OUTCOMES = Counter("cluster_auth_outcomes_total",
                        "Authentication outcomes: valid, rejected, cached, fallback, error",
                        ["outcome"])
RPC_PUBLISHED = Counter("cluster_rpc_published_total", "RPC request messages published",
                        ["queue"])
RPC_DURATION = Histogram("cluster_rpc_duration_seconds", "RPC round trip by queue and outcome",
                         ["queue", "outcome"], buckets=_LATENCY_BUCKETS)
OPERATIONS = Histogram("cluster_operation_duration_seconds",
                       "Cluster operations fetched from agents (one per RPC, shared by "
                       "identical concurrent requests), by operation and outcome",
                       ["operation", "outcome"], buckets=_LATENCY_BUCKETS)
REPLIES_DROPPED = Counter("cluster_rpc_replies_dropped_total",
                          "Replies that matched no waiting request", ["reason"])
REPLIES_REROUTED = Counter("cluster_rpc_replies_rerouted_total",
                           "Replies sent on to the worker that owns them: direct or broadcast",
                           ["route"])
REPLIES_RECEIVED = Counter("cluster_rpc_replies_received_total",
                           "Reply deliveries to a worker, by queue: own, fixed or relayed",
                           ["via"])
AUTH_EVENTS = Counter("cluster_auth_events_total",
                      "Auth events received: user_revoked, cache_flush, ignored, "
                      "throttled (a cache_flush within a second of the last), "
                      "wrong_exchange (not delivered through the auth events exchange)",
                      ["event"])
AUTH_SHARED_CACHE = Counter("cluster_auth_shared_cache_total",
                            "Shared (Redis) auth cache look-ups: hit, miss, error, "
                            "invalid (an entry that is not ours: bad MAC, oversized, "
                            "future-dated, malformed)", ["outcome"])
BROKER_RECONNECTS = Counter("cluster_broker_reconnects_total",
                            "Broker connections made after a loss, by the node connected to",
                            ["node"])
SATURATED = Counter("cluster_saturated_total",
                    "Cluster calls refused (503): no thread, RPC or agent slot in time, "
                    "or the agent's breaker open", ["scope"])
SHED = Counter("cluster_http_shed_total",
               "Requests answered 503 or 431, or connections closed, by the worker's main loop "
               "to protect itself: queue_timeout, too_many_connections, idle_closed, "
               "headers_too_large, header_memory, write_stall, pipelining", ["reason"])
BREAKER_OPEN = Gauge("cluster_agent_breaker_open",
                     "Agents whose circuit breaker is open or half-open, in this worker",
                     multiprocess_mode="livesum")
BREAKER_TRANSITIONS = Counter("cluster_agent_breaker_transitions_total",
                              "Agent circuit breaker state changes, by the state entered",
                              ["state"])
RPC_INFLIGHT = Gauge("cluster_rpc_inflight", "RPCs waiting for a reply",
                     multiprocess_mode="livesum")
BROKER_CONNECTED = Gauge("cluster_broker_connected",
                         "1 when this worker's broker connection is up",
                         multiprocess_mode="liveall")
# Set from each successful list-agents reply, never polled: the pod's answer is the
# most recent reply any live worker saw (0 until the first one).
AGENTS_CONNECTED = Gauge("cluster_agents_connected",
                         "Agents connected, as of the last successful list-agents reply",
                         multiprocess_mode="livemostrecent")

# Every known label value exists from the start, at 0: a rate over a series that
# appears only with its first event is empty rather than 0, so a dashboard panel or
# an alert would show "no data" exactly when things are fine.
for _outcome in ("valid", "cached", "fallback", "rejected", "error"):
    AUTH_OUTCOMES.labels(_outcome)
for _reason in ("unknown", "not_owner", "owner_gone", "unroutable", "duplicate", "too_large"):
    REPLIES_DROPPED.labels(_reason)
for _route in ("direct", "broadcast"):
    REPLIES_REROUTED.labels(_route)
for _via in ("own", "fixed", "relayed"):
    REPLIES_RECEIVED.labels(_via)
for _event in ("user_revoked", "cache_flush", "ignored", "throttled", "wrong_exchange"):
    AUTH_EVENTS.labels(_event)
for _outcome in ("hit", "miss", "error", "invalid"):
    AUTH_SHARED_CACHE.labels(_outcome)
for _scope in ("rpc", "agent", "breaker", "parse"):
    SATURATED.labels(_scope)
for _reason in ("queue_timeout", "too_many_connections", "idle_closed", "headers_too_large",
                "header_memory", "write_stall", "pipelining"):
    SHED.labels(_reason)
for _state in ("open", "half_open", "closed"):
    BREAKER_TRANSITIONS.labels(_state)


# The request path's updates (HTTP, RPC, replies, auth outcomes) go through the batch;
# rare events (drops, breaker changes, connection state) are written at once.
BATCH = MetricBatch()


def _cached(metric: Any) -> Any:
    """``metric.labels`` memoised: ``labels()`` takes a lock and builds a key per call."""
    children: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


_published, _rpc_duration = _cached(RPC_PUBLISHED), _cached(RPC_DURATION)
_received, _auth_outcome = _cached(REPLIES_RECEIVED), _cached(AUTH_OUTCOMES)
_operation = _cached(OPERATIONS)


class PrometheusObserver(Observer):
    """Feeds the RPC and auth events into the metrics above."""

    def rpc_published(self, queue: str) -> None:
        BATCH.inc(_published(queue))

    def rpc_finished(self, queue: str, outcome: str, seconds: float) -> None:
        BATCH.observe(_rpc_duration(queue, outcome), seconds)

    def operation_finished(self, operation: str, outcome: str, seconds: float) -> None:
        BATCH.observe(_operation(operation, outcome), seconds)

    def rpc_inflight(self, delta: int) -> None:
        BATCH.inc(RPC_INFLIGHT, delta)

    def reply_received(self, via: str) -> None:
        BATCH.inc(_received(via))

    def reply_dropped(self, reason: str) -> None:
        REPLIES_DROPPED.labels(reason).inc()

    def reply_rerouted(self, route: str) -> None:
        REPLIES_REROUTED.labels(route).inc()

    def auth_event(self, event: str) -> None:
        AUTH_EVENTS.labels(event).inc()

    def auth_cache(self, outcome: str) -> None:
        AUTH_SHARED_CACHE.labels(outcome).inc()

    def broker_connected(self, connected: bool) -> None:
        BROKER_CONNECTED.set(1 if connected else 0)

    def broker_nodes(self, nodes: list[str]) -> None:
        for node in nodes:  # each node's series exists from the start, at 0
            BROKER_RECONNECTS.labels(node)

    def broker_reconnected(self, node: str) -> None:
        BROKER_RECONNECTS.labels(node).inc()

    def auth_outcome(self, outcome: str) -> None:
        BATCH.inc(_auth_outcome(outcome))

    def saturated(self, scope: str) -> None:
        SATURATED.labels(scope).inc()

    def agents_connected(self, count: int) -> None:
        AGENTS_CONNECTED.set(count)

    def breaker_changed(self, agent_id: str, state: str, open_count: int) -> None:
        # No agent_id label: clients choose agent ids, and must not create series at will.
        BREAKER_TRANSITIONS.labels(state).inc()
        BREAKER_OPEN.set(open_count)


_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one HTTP request and its latency.

    The labelled children are cached: ``labels()`` takes a lock and builds a
    key on every call, a measurable share of a /health request. Any other
    method is counted as ``OTHER``: gunicorn accepts any token as a method, and
    a client must not be able to create label values (series) at will.
    """
    if method not in _METHODS:
        method = "OTHER"
    children = _request_children.get((endpoint, method, status))
    if children is None:
        children = (HTTP_REQUESTS.labels(endpoint, method, str(status)),
                    HTTP_LATENCY.labels(endpoint))
        _request_children[(endpoint, method, status)] = children
    BATCH.inc(children[0])
    BATCH.observe(children[1], seconds)


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type, aggregated over all
    workers when multiprocess (this worker's batched updates written first)."""
    BATCH.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return data, CONTENT_TYPE_LATEST
