"""The hot-path run's targets: the three of the hot path first, with a PASS count."""

from __future__ import annotations

from typing import Any

from bench import report


def row(name: str, rps: float, cpu: float) -> dict[str, Any]:
    return {"name": name, "rps": rps, "cpu_ms_per_request": cpu}


def test_the_hot_path_targets_come_first_with_their_cpu() -> None:
    results = {r["name"]: r for r in (
        row("hello", 1000, 0.30), row("health", 950, 0.32), row("bare-namespaces", 1000, 0.8),
        row("namespaces", 700, 1.2), row("health-2w", 1700, 0.31))}
    found = report.checks(results, 0)
    assert [(c.target, c.status) for c in found[:report.HOT_PATH_TARGETS]] == [
        ("namespaces >= 0.8 x bare-namespaces", "MISS"), ("health >= 0.9 x hello", "PASS"),
        ("health-2w >= 1.6 x health", "PASS")]
    assert "CPU 1.20 / 0.80 ms/req" in found[0].note
    text = report.checks_table(found)
    assert text.splitlines()[0] == "hot-path targets: 2 of 3 PASS"
    assert "pods vs 1 x bare-pods" in text


def test_a_missing_side_is_not_applicable() -> None:
    found = report.checks({"health": row("health", 900, 0.3)}, 0)
    assert [c.status for c in found[:report.HOT_PATH_TARGETS]] == ["n/a"] * 3
