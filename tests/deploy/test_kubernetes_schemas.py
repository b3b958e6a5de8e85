"""Every manifest under deploy/kubernetes/ against Kubernetes' own OpenAPI schemas, strictly.

kubernetes-validate ships the JSON schemas of each Kubernetes release; strict
mode rejects any field the schema does not know (a typo such as
``readinessprobe`` or a field of the wrong object passes ``kubectl apply`` on
some clusters and silently does nothing). The manifests are checked against
the oldest Kubernetes release we support and the newest one the package knows.

Kinds Kubernetes itself does not define have no schema there:

* ``Kustomization`` (kustomize's file, never sent to the API server): its
  ``resources`` are cross-checked in ``test_deploy_manifests.py``;
* the Prometheus Operator's CRDs, ``PrometheusRule`` and ``ServiceMonitor``:
  their ``metadata`` is validated strictly against Kubernetes' ``ObjectMeta``
  schema here; the PrometheusRule's ``spec`` must equal
  ``deploy/prometheus/alerts.yaml``, which promtool checks and unit-tests
  (``test_alert_rules.py``); the ServiceMonitor is held against the Service
  and the metrics route below. Their full CRD schemas are not shipped by any
  package we install, so the rest of their shape is not schema-checked.

The cross-checks no schema can make (probe paths, ports, grace periods) are in
``test_deploy_manifests.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from cluster_service.api.contract import BASE_PATH

from ..support.tools import in_ci

try:
    import kubernetes_validate
    from kubernetes_validate.utils import schema_contents
except ImportError:  # pragma: no cover - requirements-dev.txt installs it
    if in_ci():
        raise
    pytest.skip("kubernetes-validate is not installed (pip install -r requirements-dev.txt)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes release we support, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
NO_BUILTIN_SCHEMA = {("kustomize.config.k8s.io/v1beta1", "Kustomization"),
                     ("monitoring.coreos.com/v1", "PrometheusRule"),
                     ("monitoring.coreos.com/v1", "ServiceMonitor")}
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/" \
              "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file relative to deploy/kubernetes, document) for every document of every file."""
    paths = sorted(K8S.rglob("*.yaml"))
    assert paths, "no manifests found"
    for path in paths:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                yield str(path.relative_to(K8S)), document


def kind_of(document: dict[str, Any]) -> tuple[str, str]:
    return document["apiVersion"], document["kind"]


DOCUMENTS = list(documents())
BUILTIN = [(name, doc) for name, doc in DOCUMENTS if kind_of(doc) not in NO_BUILTIN_SCHEMA]
CUSTOM = [(name, doc) for name, doc in DOCUMENTS
          if kind_of(doc) in NO_BUILTIN_SCHEMA and doc["kind"] != "Kustomization"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name,document", BUILTIN, ids=[n for n, _ in BUILTIN])
def test_builtin_kinds_pass_strict_validation(name: str, document: dict[str, Any],
                                              version: str) -> None:
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        pytest.fail(f"{name}: {document['kind']} invalid for Kubernetes {version} at "
                    f"{path}: {error.message}")


@pytest.mark.parametrize("name,document", DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_only_the_known_custom_kinds_lack_a_schema(name: str, document: dict[str, Any]) -> None:
    """A kind the validator cannot check must be one we check otherwise, not a typo."""
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[0], strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert kind_of(document) in NO_BUILTIN_SCHEMA, f"{name}: no schema for {kind_of(document)}"
    else:
        assert kind_of(document) not in NO_BUILTIN_SCHEMA, name


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The check can fail: a misspelt probe field in the real Deployment is caught."""
    (deployment,) = [doc for _, doc in BUILTIN if doc["kind"] == "Deployment"]
    container = dict(deployment["spec"]["template"]["spec"]["containers"][0])
    container["readinessprobe"] = container.pop("readinessProbe")
    broken = {**deployment, "spec": {**deployment["spec"], "template": {
        **deployment["spec"]["template"], "spec": {
            **deployment["spec"]["template"]["spec"], "containers": [container]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def object_meta_validator(version: str) -> jsonschema.protocols.Validator:
    """Kubernetes' own strict ObjectMeta schema, from kubernetes-validate's files."""
    definitions = schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator({"$ref": OBJECT_META}, registry=registry)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name,document", CUSTOM, ids=[n for n, _ in CUSTOM])
def test_custom_resources_have_valid_metadata(name: str, document: dict[str, Any],
                                              version: str) -> None:
    validator = object_meta_validator(version)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
              for e in validator.iter_errors(document["metadata"])]
    assert errors == [], f"{name}: {errors}"
    assert set(document) == {"apiVersion", "kind", "metadata", "spec"}, name


def test_object_meta_check_rejects_an_unknown_field() -> None:
    validator = object_meta_validator(KUBERNETES_VERSIONS[0])
    assert not validator.is_valid({"name": "x", "label": {"a": "b"}})
    assert validator.is_valid({"name": "x", "labels": {"a": "b"}})


def test_the_servicemonitor_scrapes_the_service_metrics_route() -> None:
    by_kind = {doc["kind"]: doc for _, doc in DOCUMENTS}
    monitor, service = by_kind["ServiceMonitor"], by_kind["Service"]
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == f"{BASE_PATH}/metrics"
    # The job label is the Service's name by default: the alert rules select it.
    assert "jobLabel" not in monitor["spec"]
    assert service["metadata"]["name"] == "cluster-service"
