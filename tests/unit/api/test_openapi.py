"""The OpenAPI document: a valid OpenAPI 3 document, every route in it, real responses match it."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from flask import Flask
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from werkzeug.test import TestResponse

from cluster_service.api.contract import BASE_PATH
from cluster_service.api.openapi import build_spec

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_spec()


def check_response(spec: dict[str, Any], path: str, response: TestResponse) -> None:
    """Fail unless ``response`` is one the document lists for ``GET path``, body and headers."""
    operation = spec["paths"][BASE_PATH + path]["get"]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"GET {path}: status {response.status_code} not documented"
    for header in documented.get("headers", {}):
        assert header in response.headers, f"GET {path}: header {header} missing"
    (media_type, content), = documented["content"].items()
    assert response.mimetype == media_type
    if media_type != "application/json":
        return
    schema = {**content["schema"], "components": spec["components"]}
    errors = sorted(OAS30Validator(schema).iter_errors(response.get_json()), key=str)
    assert not errors, f"GET {path} {response.status_code}: {errors[0].message}"


class TestDocument:
    def test_is_a_valid_openapi_3_document(self, spec):
        assert spec["openapi"].startswith("3.")
        validate_spec(spec)

    def test_documents_exactly_the_apps_routes(self, spec, app: Flask):
        routes = {(rule.rule.replace("<", "{").replace(">", "}"), method)
                  for rule in app.url_map.iter_rules()
                  if rule.rule.startswith(BASE_PATH)
                  for method in (rule.methods or set()) - IGNORED_METHODS}
        documented = {(path, method.upper()) for path, ops in spec["paths"].items()
                      for method in ops}
        assert documented == routes

    def test_declares_the_api_key_scheme_on_the_cluster_calls_only(self, spec):
        assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
            "type": "apiKey", "in": "header", "name": "X-API-Key"}
        secured = {path for path, ops in spec["paths"].items() if ops["get"]["security"]}
        assert secured == {f"{BASE_PATH}{path}" for path in (
            "/namespaces", "/agents/connected", "/pods", "/deployments", "/services", "/nodes",
            "/summary", "/pods/{pod}/logs")}
        for path in secured:
            assert "401" in spec["paths"][path]["get"]["responses"]

    def test_every_error_response_uses_the_one_envelope(self, spec):
        error = spec["components"]["schemas"]["Error"]
        assert set(error["required"]) == {"success", "error", "message", "request_id",
                                          "timestamp"}
        for path, ops in spec["paths"].items():
            for status, response in ops["get"]["responses"].items():
                schema = response["content"].get("application/json", {}).get("schema")
                if int(status) >= 400 and path != f"{BASE_PATH}/ready":
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
                if status in ("429", "503") and path != f"{BASE_PATH}/ready":
                    assert "Retry-After" in response["headers"]

    def test_namespaces_parameters_follow_the_contract(self, spec):
        params = {p["name"]: p for p in
                  spec["paths"][f"{BASE_PATH}/namespaces"]["get"]["parameters"]}
        agent, cluster = params["agent_id"], params["cluster_id"]
        assert agent["in"] == "query" and agent["required"] is True
        assert agent["schema"]["pattern"] == "^[A-Za-z0-9._:-]{1,128}$"
        assert cluster["in"] == "query" and cluster["required"] is False
        assert cluster["schema"]["type"] == "integer"
        assert (cluster["schema"]["minimum"], cluster["schema"]["maximum"]) == (0, 2 ** 63 - 1)
        assert "nullable" not in cluster["schema"]

    def test_served_document_is_the_built_one(self, client, spec):
        response = client.get(f"{BASE}/openapi.json")
        assert response.status_code == 200
        assert response.get_json() == spec
        check_response(spec, "/openapi.json", response)


def _error_reply(code: str | None) -> Callable[[dict[str, Any]], Any]:
    def respond(body: dict[str, Any]) -> list[tuple[Any, float]]:
        reply = {"request_id": body["request_id"], "agent_id": body.get("agent_id"),
                 "result": None, "error": "agent said no", **({"error_code": code} if code else {})}
        return [(reply, 0)]
    return respond


class TestResponsesMatchTheDocument:
    """One real response per documented status, checked against the document."""

    KEY = {"X-API-Key": API_KEY}

    def test_probes_and_meta(self, spec, client):
        for path in ("/health", "/ready", "/metrics", "/openapi.json"):
            check_response(spec, path, client.get(BASE + path))

    def test_cluster_calls_succeeding(self, spec, client):
        check_response(spec, "/namespaces",
                       client.get(f"{BASE}/namespaces?agent_id=a1&cluster_id=5", headers=self.KEY))
        check_response(spec, "/namespaces",
                       client.get(f"{BASE}/namespaces?agent_id=a1", headers=self.KEY))
        check_response(spec, "/agents/connected",
                       client.get(f"{BASE}/agents/connected", headers=self.KEY))

    @pytest.mark.parametrize("query, headers, status", [
        ("", KEY, 400),
        ("agent_id=bad%20id", KEY, 400),
        ("agent_id=a1&cluster_id=-1", KEY, 400),
        ("agent_id=a1", {}, 401),
        ("agent_id=a1", {"X-API-Key": "wrong"}, 401),
    ])
    def test_namespaces_rejections(self, spec, client, query, headers, status):
        response = client.get(f"{BASE}/namespaces?{query}", headers=headers)
        assert response.status_code == status
        check_response(spec, "/namespaces", response)

    def test_agents_without_a_key(self, spec, client):
        response = client.get(f"{BASE}/agents/connected")
        assert response.status_code == 401
        check_response(spec, "/agents/connected", response)

    @pytest.mark.parametrize("code, status", [
        ("forbidden", 403), ("agent_not_connected", 404), ("agent_timeout", 504), (None, 502)])
    def test_peer_errors(self, spec, make_app, transport: FakeTransport, code, status):
        transport.responders["cluster_namespace_requests"] = _error_reply(code)
        transport.responders["cluster_agents_requests"] = _error_reply(code)
        client = make_app().test_client()
        for path in ("/namespaces?agent_id=a1", "/agents/connected"):
            response = client.get(BASE + path, headers=self.KEY)
            assert response.status_code == status
            check_response(spec, path.split("?")[0], response)

    def test_agent_silent(self, spec, make_app, transport: FakeTransport):
        transport.responders["cluster_namespace_requests"] = lambda body: None
        client = make_app(WEBSOCKET_TIMEOUT="0.2").test_client()
        response = client.get(f"{BASE}/namespaces?agent_id=a1", headers=self.KEY)
        assert response.status_code == 504
        check_response(spec, "/namespaces", response)

    def test_broker_down(self, spec, make_app, transport: FakeTransport):
        transport.initially_connected = False
        client = make_app(BROKER_CONNECT_WAIT="0").test_client()
        for path in ("/ready", "/namespaces?agent_id=a1", "/agents/connected"):
            response = client.get(BASE + path, headers=self.KEY)
            assert response.status_code == 503
            check_response(spec, path.split("?")[0], response)

    def test_rate_limited(self, spec, make_app):
        for path in ("/namespaces?agent_id=a1", "/agents/connected"):
            client = make_app(RATE_LIMIT_ENABLED="true",
                              RATE_LIMIT_REQUESTS_PER_MINUTE="1").test_client()
            statuses = [client.get(BASE + path, headers=self.KEY) for _ in range(2)]
            assert [r.status_code for r in statuses] == [200, 429]
            check_response(spec, path.split("?")[0], statuses[1])

    def test_metrics_disabled(self, spec, make_app):
        response = make_app(METRICS_ENABLED="false").test_client().get(f"{BASE}/metrics")
        assert response.status_code == 404
        check_response(spec, "/metrics", response)
