"""The operations scenario's arithmetic: its agents, its log pod, its targets and its table."""

from __future__ import annotations

from typing import Any

from bench.operations import BIG_PODS, PODS, agent_id, checks, log_pod, table
from devpeers import parse_agent_id


def row(app: str, kind: str, rps: float, clients: int = 16, pods: int = PODS,
        rss: float = 100.0, non_200: int = 0) -> dict[str, Any]:
    return {"app": app, "kind": kind, "pods": pods, "clients": clients, "rps": rps,
            "lists_per_s": None, "p50_ms": 300.0, "p99_ms": 400.0, "statuses": {200: 10},
            "non_200": non_200, "cpu_ms_per_request": 50.0, "peer_cpu_ms_per_request": 1.0,
            "reply_bytes": 1_400_000, "rss_peak_mb": [rss], "rss_after_mb": [rss]}


def test_each_client_has_its_own_slow_agent_of_the_scenarios_size() -> None:
    assert agent_id(PODS, 3) != agent_id(PODS, 4)
    traits = parse_agent_id(agent_id(PODS, 3))
    assert (traits.delay, traits.pods) == (0.3, PODS)


def test_the_log_pod_is_a_running_pod_every_agent_of_a_size_has() -> None:
    name = log_pod(PODS)
    assert name and name == log_pod(PODS)


def test_targets_are_the_ratio_per_client_count_and_the_rss_bound() -> None:
    rows = [row("service", "pods", 9.0), row("bare", "pods", 10.0),
            row("service", "pods", 7.0, clients=64), row("bare", "pods", 10.0, clients=64),
            row("service", "pods", 2.0, clients=16, pods=BIG_PODS, rss=260.0)]
    found = {name: met for name, _measured, met in checks(rows)}
    assert found["C=16: service /pods >= 0.8 x bare /pods"] is True
    assert found["C=64: service /pods >= 0.8 x bare /pods"] is False
    assert found[f"{PODS} pods: service RSS/worker <= 250 MB (peak over rows)"] is True
    assert found[f"{BIG_PODS} pods: service RSS/worker <= 250 MB (peak over rows)"] is False


def test_errors_miss_the_ratio_and_missing_rows_are_named() -> None:
    found = checks([row("service", "pods", 12.0, non_200=3), row("bare", "pods", 10.0)])
    assert [met for name, _m, met in found if name.startswith("C=16")] == [False]
    assert ("20000 pods: service RSS/worker <= 250 MB (peak over rows)", "n/a (no row)",
            False) in found


def test_table_has_one_line_per_row() -> None:
    text = table([row("service", "pods", 9.0), row("bare", "logs", 40.0)])
    assert "| service | pods | 5000 | 16 | 9.0 |" in text
    assert len(text.splitlines()) == 4
