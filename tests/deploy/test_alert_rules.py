"""The alert rules, checked and unit-tested by promtool, and held against the code and docs.

``deploy/prometheus/alerts.yaml`` is the source; the PrometheusRule manifest
must hold exactly the same groups. promtool's unit tests
(``deploy/prometheus/tests/``) feed input series and expect alerts; every alert
must be made to fire by at least one of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..support.promql import exported_sample_names, promql_metric_names
from ..support.tools import run_tool

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yaml"))
PROMETHEUS_RULE = REPO / "deploy" / "kubernetes" / "monitoring" / "prometheusrule.yaml"
OPERATIONS = REPO / "docs" / "operations.md"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules()}


def assert_ok(result: Any) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    assert_ok(run_tool("promtool", "check", "rules", str(ALERTS)))


def test_promtool_checks_the_shipped_config() -> None:
    assert_ok(run_tool("promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")))


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit test files"
    assert_ok(run_tool("promtool", "test", "rules", *map(str, RULE_TESTS)))


def test_every_alert_is_made_to_fire_by_a_unit_test() -> None:
    fired = {case["alertname"] for path in RULE_TESTS for test in load(path)["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    quiet = {case["alertname"] for path in RULE_TESTS for test in load(path)["tests"]
             for case in test.get("alert_rule_test", []) if not case.get("exp_alerts")}
    assert fired == alert_names(), alert_names() ^ fired
    assert quiet == alert_names(), f"no case where these stay quiet: {alert_names() - quiet}"


def test_the_prometheusrule_holds_the_same_rules() -> None:
    manifest = load(PROMETHEUS_RULE)
    assert (manifest["apiVersion"], manifest["kind"]) == ("monitoring.coreos.com/v1",
                                                          "PrometheusRule")
    assert manifest["spec"] == load(ALERTS), (
        f"{PROMETHEUS_RULE.name} and {ALERTS.name} differ: edit alerts.yaml, then run "
        "deploy/prometheus/sync-prometheusrule.sh")


def test_every_metric_an_alert_uses_is_exported() -> None:
    samples, _ = exported_sample_names()
    used = set().union(*(promql_metric_names(rule["expr"]) for rule in rules()))
    assert used, "no metric found in the rules"
    assert used <= samples, used - samples


def test_every_alert_has_labels_annotations_and_a_runbook_paragraph() -> None:
    headings = {re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
                for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
                if line.startswith("### ")}
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/operations.md has no '### {name}' runbook"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rules_select_the_shipped_job(rule: dict[str, Any]) -> None:
    job = load(PROMETHEUS / "prometheus.yml")["scrape_configs"][0]["job_name"]
    selectors = re.findall(r"\{([^}]*)\}", rule["expr"])
    assert selectors and all(f'job="{job}"' in s for s in selectors), rule["expr"]
