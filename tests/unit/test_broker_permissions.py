"""The broker user's least permissions: what they allow, and that the docs give the same."""

from __future__ import annotations

import re
from pathlib import Path

from cluster_service.broker_permissions import broker_permissions, set_permissions_command
from cluster_service.config import load_settings
from cluster_service.rpc.call_ids import new_token, reply_queue_name

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = load_settings({})


def allows(pattern: str, name: str) -> bool:
    return re.match(pattern, name) is not None


def test_the_service_may_declare_its_queues_and_exchanges_and_nothing_else() -> None:
    configure = broker_permissions(DEFAULTS).configure
    reply_queue = reply_queue_name(new_token())
    for name in (*DEFAULTS.result_queues, DEFAULTS.auth_request_queue, DEFAULTS.reply_exchange,
                 DEFAULTS.auth_events_exchange, reply_queue, f"{reply_queue}.listener0"):
        assert allows(configure, name), name
    for name in ("amq.gen-x", "other_queue", "cluster_auth_requestsX", "amq.default", ""):
        assert not allows(configure, name), name


def test_it_never_publishes_auth_events_nor_consumes_requests() -> None:
    permissions = broker_permissions(DEFAULTS)
    assert allows(permissions.write, "amq.default")
    assert not allows(permissions.write, DEFAULTS.auth_events_exchange)
    assert not allows(permissions.read, DEFAULTS.auth_request_queue)
    assert allows(permissions.read, DEFAULTS.auth_result_queue)


def test_the_patterns_follow_the_configured_names() -> None:
    settings = load_settings({"AUTH_RESULT_QUEUE": "t-1.auth.results"})
    assert allows(broker_permissions(settings).read, "t-1.auth.results")
    assert not allows(broker_permissions(settings).read, "t-1Xauth.results")


def test_operations_md_gives_the_default_patterns() -> None:
    text = (REPO / "docs" / "operations.md").read_text().replace("\\|", "|")
    permissions = broker_permissions(DEFAULTS)
    for kind in ("configure", "write", "read"):
        assert f"| {kind} | `{getattr(permissions, kind)}` |" in text, kind


def test_the_printed_command_sets_them_for_the_user_and_vhost() -> None:
    command = set_permissions_command(load_settings({"RABBITMQ_USER": "svc",
                                                     "RABBITMQ_VHOST": "kubesage"}))
    assert command.startswith("rabbitmqctl set_permissions -p kubesage svc '^(")
