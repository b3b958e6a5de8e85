"""Deployment files held against the code: Kubernetes manifests, docker-compose, Grafana.

Nothing here needs a cluster or a Docker engine. Probe paths are checked
against the app's real routes, ports and timeouts against the real config and
gunicorn.conf.py, variable names against what the code reads, and every metric
of the dashboard against ``cluster_service/observability/metrics.py``.
"""

from __future__ import annotations

import json
import re
import subprocess  # nosec B404 - runs gunicorn.conf.py in a child interpreter
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest
import yaml

from cluster_service import create_app
from cluster_service.api.contract import BASE_PATH
from cluster_service.config import Settings, load_settings
from devpeers import PeerConfig

from ..support.fake_transport import FakeTransport
from ..support.promql import exported_sample_names, promql_metric_names

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
DASHBOARD = REPO / "deploy" / "grafana" / "cluster-service.json"
SECRET_KEYS = {"RABBITMQ_PASSWORD", "RATE_LIMIT_STORAGE_URI"}
SECRETS_DIR = "/etc/cluster-service/secrets"


class RecordingEnv(dict[str, str]):
    """An environment mapping that remembers every name the code looks up."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.seen.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.seen.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)


def service_variables() -> set[str]:
    """Every variable the service reads: config.py's, plus those gunicorn.conf.py reads itself."""
    env = RecordingEnv()
    load_settings(env)
    source = (REPO / "gunicorn.conf.py").read_text()
    return env.seen | set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", source))


def peer_variables() -> set[str]:
    env = RecordingEnv()
    PeerConfig.from_env(env)
    return env.seen


def gunicorn_values(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """gunicorn.conf.py's settings under ``env``, read in a child interpreter (it has effects)."""
    script = ("import json, runpy, sys; ns = runpy.run_path(sys.argv[1]); "
              "print(json.dumps({k: ns[k] for k in ('bind', 'workers', 'threads', 'timeout', "
              "'graceful_timeout')}))")
    run = subprocess.run(  # nosec B603 - our own interpreter and file
        [sys.executable, "-c", script, str(REPO / "gunicorn.conf.py")],
        env={"PATH": "/usr/bin:/bin", **env,
             "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The documents by kind (one of each)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path, document in k8s_documents():
        assert document["kind"] not in by_kind, f"{path.name}: a second {document['kind']}"
        by_kind[document["kind"]] = document
    return by_kind


@pytest.fixture(scope="module")
def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def deployed_env(manifests: dict[str, dict[str, Any]],
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment the pods get: the ConfigMap, whose ``*_FILE`` variables name the
    Secret's keys as mounted; here each is a local file holding the example's value."""
    mounted = tmp_path_factory.mktemp("secrets")
    for key, value in manifests["Secret"]["stringData"].items():
        (mounted / key).write_text(value)
    return {name: value.replace(SECRETS_DIR, str(mounted)) if name.endswith("_FILE") else value
            for name, value in manifests["ConfigMap"]["data"].items()}


@pytest.fixture(scope="module")
def routes(deployed_env: dict[str, str]) -> set[str]:
    env = {**{k: v for k, v in deployed_env.items() if k != "RATE_LIMIT_STORAGE_URI_FILE"},
           "RATE_LIMIT_STORAGE_URI": "memory://"}  # no Redis here
    app = create_app(load_settings(env), transport=FakeTransport())
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or set())}


def port_by_name(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


class TestKubernetesManifests:
    def test_every_file_parses_to_named_objects(self, manifests):
        assert set(manifests) == {"ConfigMap", "Secret", "Deployment", "Service",
                                  "PodDisruptionBudget", "HorizontalPodAutoscaler",
                                  "Kustomization"}
        for kind, document in manifests.items():
            assert document["apiVersion"], kind
            if kind != "Kustomization":
                assert document["metadata"]["name"], kind

    def test_kustomization_lists_every_manifest_but_the_secret_example(self, manifests):
        listed = set(manifests["Kustomization"]["resources"])
        present = {p.name for p in K8S.glob("*.yaml")}
        assert listed == present - {"kustomization.yaml", "secret.example.yaml"}

    def test_probes_hit_real_routes_on_the_configured_port(self, container, routes,
                                                           deployed_env):
        assert port_by_name(container, "http") == Settings.port == 8008
        assert int(deployed_env["PORT"]) == 8008
        scheme = "HTTPS" if load_settings(deployed_env).use_ssl else "HTTP"
        expected = {"startupProbe": "/health", "livenessProbe": "/health",
                    "readinessProbe": "/ready"}
        for probe, path in expected.items():
            get = container[probe]["httpGet"]
            assert get["path"] == BASE_PATH + path, probe
            assert get["path"] in routes, probe
            assert get["port"] in ("http", 8008), probe
            assert get["scheme"] == scheme, probe

    def test_probe_paths_answer_without_a_key_and_never_touch_the_broker(self, container):
        transport = FakeTransport()
        client = create_app(load_settings({"DEBUG": "false"}), transport=transport).test_client()
        for probe in ("startupProbe", "livenessProbe"):
            assert client.get(container[probe]["httpGet"]["path"]).status_code == 200
        assert transport.published == []

    def test_shutdown_fits_in_the_grace_period(self, manifests, container, deployed_env,
                                               tmp_path):
        gunicorn = gunicorn_values(deployed_env, tmp_path)
        settings = load_settings(deployed_env)
        assert gunicorn["graceful_timeout"] == int(settings.longest_request + 5)
        assert gunicorn["bind"] == ["0.0.0.0:8008"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        pre_stop = float(command[1])
        grace = manifests["Deployment"]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]
        assert grace > pre_stop + gunicorn["graceful_timeout"]
        # Long enough for the endpoint removal to reach kube-proxy and the ingress.
        assert pre_stop >= 5

    def test_runs_non_root_with_a_read_only_root_and_a_writable_tmp(
            self, manifests, container, deployed_env):
        pod = manifests["Deployment"]["spec"]["template"]["spec"]
        dockerfile_user = re.search(r"^USER\s+(\d+)", (REPO / "Dockerfile").read_text(), re.M)
        assert dockerfile_user is not None
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(dockerfile_user.group(1))
        assert pod["automountServiceAccountToken"] is False
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert set(mounts) == {"/tmp", SECRETS_DIR}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        assert mounts[SECRETS_DIR]["readOnly"] is True
        assert volumes[mounts[SECRETS_DIR]["name"]]["secret"]["defaultMode"] & 0o007 == 0
        assert deployed_env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")

    def test_resources_are_requested_and_limited(self, container):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), kind

    def test_config_comes_from_the_configmap_and_secrets_from_the_secret(
            self, manifests, container, deployed_env):
        sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"configMapRef": manifests["ConfigMap"]["metadata"]["name"]}
        config, secret = manifests["ConfigMap"]["data"], manifests["Secret"]["stringData"]
        assert set(secret) == SECRET_KEYS
        assert not SECRET_KEYS & set(config)
        # Secrets reach the pods only as files of the mounted Secret.
        (volume,) = [v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]
                     if "secret" in v]
        assert volume["secret"]["secretName"] == manifests["Secret"]["metadata"]["name"]
        for key in SECRET_KEYS:
            assert config[f"{key}_FILE"] == f"{SECRETS_DIR}/{key}"
        assert "env" not in container  # one source of truth per variable
        known = service_variables()
        assert set(config) | set(secret) <= known, (set(config) | set(secret)) - known
        assert all(isinstance(v, str) for v in deployed_env.values())
        settings = load_settings(deployed_env)  # every value is valid
        assert settings.debug is False and settings.metrics_enabled is True

    def test_service_pdb_and_hpa_select_the_deployment(self, manifests, container):
        deployment = manifests["Deployment"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        service = manifests["Service"]["spec"]
        assert service["selector"].items() <= labels.items()
        (port,) = service["ports"]
        assert port["port"] == 8008
        assert port["targetPort"] in ("http", port_by_name(container, "http"))
        assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
        target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])

    def test_replica_counts_allow_a_drain(self, manifests):
        hpa = manifests["HorizontalPodAutoscaler"]["spec"]
        pdb = manifests["PodDisruptionBudget"]["spec"]
        assert hpa["minReplicas"] > pdb["minAvailable"]
        assert hpa["minReplicas"] <= manifests["Deployment"]["spec"]["replicas"] <= \
            hpa["maxReplicas"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


class TestDockerCompose:
    def test_has_the_broker_redis_peers_and_service(self, compose):
        assert set(compose["services"]) == {"rabbitmq", "redis", "peers", "cluster-service"}

    def test_service_environment_is_real_valid_config(self, compose):
        env = compose["services"]["cluster-service"]["environment"]
        assert set(env) <= service_variables(), set(env) - service_variables()
        settings = load_settings({k: str(v) for k, v in env.items()})
        assert settings.rabbitmq_host in compose["services"]
        assert urlparse(settings.rate_limit_storage_uri).hostname in compose["services"]
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        assert "/tmp" in compose["services"]["cluster-service"]["tmpfs"]

    def test_peers_environment_is_what_the_peers_read(self, compose):
        peers = compose["services"]["peers"]
        assert peers["command"] == ["python", "-m", "devpeers"]
        assert "./devpeers:/app/devpeers:ro" in peers["volumes"]  # not in the image
        assert set(peers["environment"]) <= peer_variables()
        assert peers["environment"]["RABBITMQ_HOST"] in compose["services"]

    def test_ports_bind_to_loopback_and_the_service_port_is_8008(self, compose):
        for name, service in compose["services"].items():
            for mapping in service.get("ports", []):
                assert mapping.startswith("127.0.0.1:"), name
        assert "127.0.0.1:8008:8008" in compose["services"]["cluster-service"]["ports"]

    def test_stop_grace_outlasts_gunicorn_graceful_timeout(self, compose, tmp_path):
        service = compose["services"]["cluster-service"]
        env = {k: str(v) for k, v in service["environment"].items()}
        graceful = gunicorn_values(env, tmp_path)["graceful_timeout"]
        assert int(service["stop_grace_period"].rstrip("s")) > graceful


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs += re.findall(r"label_values\(([^,)]+)", query["query"])
    return exprs


class TestGrafanaDashboard:
    def test_is_a_dashboard_with_panels(self, dashboard):
        assert dashboard["title"] and dashboard["uid"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        assert any(t.get("expr") for p in dashboard["panels"] for t in p.get("targets", []))

    def test_every_metric_it_queries_exists(self, dashboard):
        samples, _ = exported_sample_names()
        used = set().union(*(promql_metric_names(e) for e in dashboard_queries(dashboard)))
        assert used, "no metric found in the dashboard"
        assert used <= samples, used - samples

    def test_every_metric_is_on_the_dashboard(self, dashboard):
        _, families = exported_sample_names()
        used = set().union(*(promql_metric_names(e) for e in dashboard_queries(dashboard)))
        shown = {f for f in families if any(u.startswith(f) for u in used)}
        assert shown == families, families - shown

    def test_latency_panels_use_histogram_quantile_over_buckets(self, dashboard):
        exprs = dashboard_queries(dashboard)
        quantiles = [e for e in exprs if "histogram_quantile" in e]
        assert any("cluster_http_request_duration_seconds_bucket" in e for e in quantiles)
        assert all("_bucket" in e and "le" in e for e in quantiles)

    def test_the_metric_name_parser(self):
        expr = ('histogram_quantile(0.95, sum by (le, queue) '
                '(rate(a_bucket{x="y{"}[$__rate_interval]))) / clamp_min(sum(b_total), 1e-9)')
        assert promql_metric_names(expr) == {"a_bucket", "b_total"}
