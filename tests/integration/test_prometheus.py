"""A real Prometheus scrapes a 4-worker service; every dashboard query and alert rule works.

Debian's ``prometheus`` (installed by ``.ci/run``) runs with the shipped
config, pointed at the test service and scraping every second. The service
gets bounded traffic of every kind the dashboard shows: successes, 401s, 504s
from a silent and from a late agent, replies rerouted between workers (the
peers answer on the shared results queues), and a broker cut through a TCP
proxy. Then every query of ``deploy/grafana/cluster-service.json`` is
evaluated through Prometheus' HTTP API, with the dashboard's variables
substituted as Grafana would, and must return data; every alert rule must
evaluate without error, and the cut must have put the broker alert in pending.
"""

from __future__ import annotations

import json
import os
import re
import subprocess  # nosec B404 - runs the shipped local Prometheus script
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from ..support.peers import start_peers
from ..support.prometheus_server import PrometheusProcess
from ..support.service import ServiceProcess, free_port, terminate, wait_for
from ..support.tcp_proxy import TcpProxy
from ..support.tools import require_tool

pytestmark = [pytest.mark.gunicorn, pytest.mark.rabbitmq, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "cluster-service.json"
WORKERS = 4
API_KEY = "demo-key"
# Grafana's $__rate_interval is at least four scrape intervals; one minute covers all
# of this test's traffic at a 1 s scrape, so every rate sees its events.
RATE_INTERVAL = "1m"
SUCCESSES, WRONG_KEYS, MISSING_KEYS, SILENT, LATE = 16, 5, 3, 4, 2
ROUNDS = 2
WEBSOCKET_TIMEOUT = 1.0


def get(service: ServiceProcess, path: str, key: str | None = API_KEY,
        **params: Any) -> int:
    """One request on a fresh connection (so gunicorn spreads them over its workers)."""
    headers = {"Connection": "close", **({"X-API-Key": key} if key else {})}
    return requests.get(service.base_url + path, params=params, headers=headers,
                        timeout=15).status_code


def fire(calls: list[Callable[[], int]]) -> list[int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda call: call(), calls))


def send_traffic(service: ServiceProcess) -> None:
    """Successes, 401s (wrong and missing keys), 504s (silent and late agents)."""
    statuses = fire(
        [lambda i=i: get(service, "/namespaces", agent_id=f"demo-agent-{i % 5 + 1}",
                         cluster_id=i) for i in range(SUCCESSES)]
        + [lambda: get(service, "/agents/connected")] * 4
        + [lambda: get(service, "/agents/connected", key="wrong-key")] * WRONG_KEYS
        + [lambda: get(service, "/agents/connected", key=None)] * MISSING_KEYS
        + [lambda i=i: get(service, "/namespaces", agent_id=f"fault-silent-{i}")
           for i in range(SILENT)]
        + [lambda i=i: get(service, "/namespaces", agent_id=f"fault-late-1500-{i}")
           for i in range(LATE)])
    assert statuses == ([200] * (SUCCESSES + 4) + [401] * (WRONG_KEYS + MISSING_KEYS)
                        + [504] * (SILENT + LATE)), statuses


def wait_for_counts(prometheus: PrometheusProcess, expected: dict[str, int]) -> None:
    """Wait until Prometheus' totals of the API's answers by status are ``expected``
    (the API only: the start-up's /ready polls saw 503s too)."""
    query = (f'sum(cluster_http_requests_total{{job="{prometheus.job}",status="%s",'
             f'endpoint=~".*/(namespaces|agents/connected)"}})')
    seen: dict[str, float | None] = {}

    def arrived() -> bool:
        seen.update({status: prometheus.value(query % status) for status in expected})
        return seen == expected

    try:
        wait_for(arrived, 30, 0.5, what="prometheus holding the expected counts")
    except AssertionError as error:
        by_endpoint = prometheus.query("sum by (endpoint, status) (cluster_http_requests_total)")
        raise AssertionError(f"{error}: {seen}, expected {expected}; all: {by_endpoint}") \
            from None


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"]
            for target in panel.get("targets", [])]


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy() as running:
        yield running


@pytest.fixture
def scraped(tmp_path: Path, prefix: str, proxy: TcpProxy,
            service_factory: Callable[..., ServiceProcess]
            ) -> Iterator[tuple[ServiceProcess, PrometheusProcess]]:
    """A 4-worker service behind a broker proxy, its peers, and Prometheus scraping it."""
    peers = start_peers(prefix, reply_style="results")
    prometheus: PrometheusProcess | None = None
    try:
        # Slots for every request this test sends at once, in any one worker: the
        # traffic is meant to succeed or time out, never to be refused for saturation.
        service = service_factory(WEB_CONCURRENCY=str(WORKERS), GUNICORN_THREADS="10",
                                  MAX_INFLIGHT_RPCS="8", MAX_INFLIGHT_PER_AGENT="8",
                                  WEBSOCKET_TIMEOUT=str(WEBSOCKET_TIMEOUT),
                                  RABBITMQ_HOST="127.0.0.1", RABBITMQ_PORT=str(proxy.port))
        prometheus = PrometheusProcess(tmp_path / "prometheus", service.port)
        prometheus.workdir.mkdir()
        prometheus.start()
        yield service, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        peers.stop()


def connected_workers(prometheus: PrometheusProcess) -> float | None:
    return prometheus.value(f'sum(cluster_broker_connected{{job="{prometheus.job}"}})')


def alert_states(prometheus: PrometheusProcess) -> dict[str, str]:
    return {alert["labels"]["alertname"]: alert["state"]
            for alert in prometheus.api("alerts")["alerts"]}


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def template_variables(prometheus: PrometheusProcess) -> dict[str, str]:
    """Each query variable's values as Grafana gets them (label_values), joined as a regex."""
    variables = {"__rate_interval": RATE_INTERVAL}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        metric, label = match.groups()
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert values, f"variable {variable['name']}: no {label} values for {metric}"
        variables[variable["name"]] = grafana_regex(values)
    return variables


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana puts it in a PromQL string: regex-escaped values,
    alternated, with each backslash doubled for the string literal."""
    escaped = [re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def test_prometheus_scrapes_the_service_and_every_dashboard_query_has_data(
        scraped: tuple[ServiceProcess, PrometheusProcess], proxy: TcpProxy) -> None:
    service, prometheus = scraped
    job = prometheus.job
    wait_for(lambda: prometheus.value(f'up{{job="{job}"}}') == 1.0, 30, 0.5,
             what="prometheus scraping the service")
    wait_for(lambda: connected_workers(prometheus) == WORKERS, 30, 0.5,
             what=f"prometheus seeing {WORKERS} connected workers")

    # Bounded traffic, twice: a counter series is born with its first event, so only
    # the second round shows in rate() (the first one is its starting point).
    for _round in range(ROUNDS):
        send_traffic(service)
        wait_for_counts(prometheus, {"504": (SILENT + LATE) * (_round + 1),
                                     "401": (WRONG_KEYS + MISSING_KEYS) * (_round + 1)})

    # A broker cut, held until Prometheus has seen it and the broker alert is pending.
    proxy.close()
    wait_for(lambda: connected_workers(prometheus) == 0, 30, 0.5,
             what="prometheus seeing every worker disconnected")
    assert get(service, "/namespaces", agent_id="demo-agent-1") == 503
    wait_for(lambda: alert_states(prometheus).get("ClusterServiceBrokerDisconnected")
             == "pending", 30, 0.5, what="ClusterServiceBrokerDisconnected pending")
    proxy.open()
    wait_for(lambda: connected_workers(prometheus) == WORKERS, 30, 0.5,
             what="prometheus seeing every worker reconnected")
    assert get(service, "/namespaces", agent_id="demo-agent-1") == 200

    # Prometheus has scraped the end of the traffic.
    wait_for_counts(prometheus, {"504": (SILENT + LATE) * ROUNDS,
                                 "401": (WRONG_KEYS + MISSING_KEYS) * ROUNDS, "503": 1})

    variables = template_variables(prometheus)
    assert variables["job"] == job
    empty = []
    for title, expr in panel_queries():
        if not prometheus.query(substitute(expr, variables)):  # an error raises in query()
            empty.append((title, expr))
    assert empty == [], f"dashboard queries without data: {empty}"

    # The numbers behind a few panels, not just their presence.
    by_job = f'job=~"{variables["job"]}"'
    window = f"[{RATE_INTERVAL}]"
    ratio = prometheus.value(
        f'sum(rate(cluster_http_requests_total{{{by_job},status=~"5.."}}{window})) / '
        f'sum(rate(cluster_http_requests_total{{{by_job}}}{window}))')
    assert ratio is not None and ratio > 0
    assert prometheus.value(f'sum(cluster_rpc_duration_seconds_count{{{by_job},'
                            f'outcome="timeout"}})') == (SILENT + LATE) * ROUNDS
    assert prometheus.value(f'sum(cluster_rpc_replies_rerouted_total{{{by_job}}})') > 0
    # Every late reply is dropped somewhere (which reason depends on the worker that
    # takes it from the shared results queue).
    wait_for(lambda: (prometheus.value(f'sum(cluster_rpc_replies_dropped_total{{{by_job}}})')
                      or 0) >= LATE * ROUNDS, 10, 0.5, what="the late replies counted as dropped")
    assert prometheus.value(f'max(cluster_agents_connected{{{by_job}}})') == 20
    # Concurrent requests with one wrong key in one worker share one lookup (one outcome).
    rejected = prometheus.value(
        f'sum(cluster_auth_outcomes_total{{{by_job},outcome="rejected"}})')
    assert rejected is not None and 0 < rejected <= (WRONG_KEYS + MISSING_KEYS) * ROUNDS


def test_every_alert_rule_evaluates_against_the_real_metrics(
        scraped: tuple[ServiceProcess, PrometheusProcess]) -> None:
    _service, prometheus = scraped
    wait_for(lambda: prometheus.value(f'up{{job="{prometheus.job}"}}') == 1.0, 30, 0.5,
             what="prometheus scraping the service")

    def rules() -> list[dict[str, Any]]:
        groups = prometheus.api("rules")["groups"]
        found = [rule for group in groups for rule in group["rules"]]
        return found if found and all(r["health"] != "unknown" for r in found) else []

    evaluated = wait_for(rules, 30, 0.5, what="every rule evaluated once")
    assert {rule["name"] for rule in evaluated} >= {"ClusterServiceNoReadyPods",
                                                    "ClusterServiceBrokerDisconnected"}
    assert [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []
    # A healthy service raises nothing, once scraped (before the first scrape there is
    # no pod at all: ClusterServiceNoReadyPods may be pending for an evaluation or two).
    wait_for(lambda: alert_states(prometheus) == {}, 15, 0.5, what="no alert pending")


def test_the_local_script_runs_the_shipped_config(tmp_path: Path) -> None:
    """deploy/prometheus/run-local.sh: the one command docs/observability.md gives."""
    require_tool("prometheus")
    port = free_port()
    log = open(tmp_path / "run-local.log", "wb")
    proc = subprocess.Popen(  # nosec B603 - our own script
        [str(REPO / "deploy" / "prometheus" / "run-local.sh")], stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
             "PROMETHEUS_LISTEN": f"127.0.0.1:{port}", "PROMETHEUS_DATA": str(tmp_path / "data")})
    log.close()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=2).status_code == 200, 30, 0.2,
                 what="the script's prometheus ready")
        (target,) = wait_for(lambda: requests.get(f"{url}/api/v1/targets", timeout=10)
                             .json()["data"]["activeTargets"], 30, 0.2, what="a target")
        assert target["labels"]["job"] == "cluster-service"
        assert target["scrapeUrl"] == "http://127.0.0.1:8008/api/v3.0/cluster/metrics"
        groups = requests.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert sum(len(group["rules"]) for group in groups) > 0, "alert rules not loaded"
    finally:
        terminate(proc, 15)
