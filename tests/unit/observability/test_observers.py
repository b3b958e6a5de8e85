"""LoggingObserver and CompositeObserver."""

from __future__ import annotations

import logging

import pytest

from cluster_service.observability.request_context import request_id_var
from cluster_service.observability.logging_observer import CompositeObserver, LoggingObserver

from ...support.recording import EventLog

LOGGER = "cluster_service.rpc"


def test_successful_rpc_is_logged_at_debug_with_queue_outcome_and_duration(caplog):
    caplog.set_level(logging.DEBUG, LOGGER)
    LoggingObserver().rpc_finished("cluster_auth_requests", "ok", 0.01234)
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert (record.event, record.queue, record.outcome, record.duration_ms) == (
        "rpc", "cluster_auth_requests", "ok", 12.34)


@pytest.mark.parametrize("outcome", ["timeout", "error", "broker_unavailable", "saturated"])
def test_failed_rpc_is_logged_at_warning(caplog, outcome):
    caplog.set_level(logging.DEBUG, LOGGER)
    LoggingObserver().rpc_finished("q", outcome, 2.0)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.outcome == outcome and record.duration_ms == 2000.0


def test_rpc_line_carries_the_request_id_header(caplog):
    from cluster_service.observability.logging_config import _RequestIdFilter

    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.handler.addFilter(_RequestIdFilter())
    token = request_id_var.set("req-42")
    try:
        LoggingObserver().rpc_finished("q", "ok", 0.1)
    finally:
        request_id_var.reset(token)
    assert caplog.records[0].request_id == "req-42"


def test_broker_connection_is_logged_only_when_it_changes(caplog):
    caplog.set_level(logging.DEBUG, LOGGER)
    observer = LoggingObserver()
    for state in (False, False, True, True, False, True):
        observer.broker_connected(state)
    lines = [(r.levelno, r.connected) for r in caplog.records]
    assert lines == [(logging.WARNING, False), (logging.INFO, True),
                     (logging.WARNING, False), (logging.INFO, True)]
    assert all(r.event == "broker_state" for r in caplog.records)


def test_a_close_at_shutdown_is_not_logged_as_a_lost_connection(caplog):
    caplog.set_level(logging.DEBUG, LOGGER)
    observer = LoggingObserver()
    observer.broker_connected(True)
    observer.broker_closing()
    observer.broker_connected(False)
    assert [(r.levelno, r.connected) for r in caplog.records] == [(logging.INFO, True)]


def test_other_events_are_not_logged(caplog):
    caplog.set_level(logging.DEBUG, LOGGER)
    observer = LoggingObserver()
    observer.rpc_published("q")
    observer.rpc_inflight(1)
    observer.reply_dropped("unknown")
    observer.reply_rerouted("direct")
    observer.reply_received("fixed")
    observer.auth_outcome("valid")
    assert caplog.records == []


def test_composite_hands_every_event_to_each_observer_in_order():
    first, second = EventLog(), EventLog()
    composite = CompositeObserver(first, second)
    composite.rpc_published("q")
    composite.rpc_finished("q", "ok", 0.5)
    composite.rpc_inflight(-1)
    composite.reply_dropped("not_owner")
    composite.reply_rerouted("direct")
    composite.reply_received("fixed")
    composite.broker_connected(True)
    composite.broker_closing()
    composite.auth_outcome("cached")
    composite.auth_event("user_revoked")
    composite.auth_cache("hit")
    expected = [("rpc_published", "q"), ("rpc_finished", "q", "ok", 0.5), ("rpc_inflight", -1),
                ("reply_dropped", "not_owner"), ("reply_rerouted", "direct"),
                ("reply_received", "fixed"), ("broker_connected", True), ("broker_closing",),
                ("auth_outcome", "cached"), ("auth_event", "user_revoked"),
                ("auth_cache", "hit")]
    assert first.events == expected
    assert second.events == expected


def test_empty_composite_is_a_no_op():
    CompositeObserver().rpc_finished("q", "ok", 0.1)


def test_unknown_http_methods_share_one_label_value() -> None:
    from cluster_service.observability import metrics

    before = len(metrics._request_children)
    for method in ("FOOBAR", "BAZQUX", "ZZZZZZ"):
        metrics.observe_request("unmatched", method, 405, 0.001)
    assert len(metrics._request_children) <= before + 1
    assert ("unmatched", "OTHER", 405) in metrics._request_children


def test_known_label_values_are_exported_before_their_first_event() -> None:
    """A series born with its first event makes rate() empty; these exist at 0 from the start."""
    from prometheus_client import generate_latest

    text = generate_latest().decode()
    for sample in ('cluster_saturated_total{scope="rpc"}',
                   'cluster_saturated_total{scope="agent"}',
                   'cluster_saturated_total{scope="breaker"}',
                   'cluster_agent_breaker_transitions_total{state="open"}',
                   'cluster_auth_outcomes_total{outcome="error"}',
                   'cluster_rpc_replies_dropped_total{reason="unknown"}'):
        assert sample in text, sample
