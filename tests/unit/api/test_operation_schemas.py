"""The list bodies are dumped as the parsers built them: prove that equals a full dump."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields

from cluster_service.api.operation_schemas import (DeploymentSchema, NodeSchema, PodSchema,
                                                   ServiceSchema)
from cluster_service.api.schemas import NamespaceSchema
from cluster_service.domain import agent_results

_TEXT = st.text(max_size=12)
_INT = st.integers(0, 2**31 - 1)
_AGE = st.one_of(st.none(), st.builds(
    lambda d, offset, fraction: f"2024-0{1 + d % 9}-1{d % 10}T0{d % 10}:1{d % 10}:00"
                                f"{fraction}{offset}",
    st.integers(0, 1000), st.sampled_from(["Z", "+05:30", "-07:00", "+00:00"]),
    st.sampled_from(["", ".1", ".123456789"])))
_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)

_POD = st.fixed_dictionaries({
    "name": _NAME, "namespace": _NAME, "status": _TEXT, "node": _TEXT, "restarts": _INT,
    "age": _AGE, "containers": st.one_of(st.none(), st.lists(st.fixed_dictionaries(
        {"name": _TEXT, "image": _TEXT, "ready": st.booleans()},
        optional={"restart_count": _INT}), max_size=3))})
_DEPLOYMENT = st.fixed_dictionaries({
    "name": _NAME, "namespace": _NAME, "replicas": st.one_of(st.none(), _INT), "ready": _INT,
    "available": _INT, "updated": _INT, "age": _AGE,
    "containers": st.one_of(st.none(), st.lists(_TEXT, max_size=3))})
_SERVICE = st.fixed_dictionaries({
    "name": _NAME, "namespace": _NAME, "type": _TEXT, "cluster_ip": _TEXT, "age": _AGE,
    "external_ip": st.one_of(st.none(), st.lists(st.one_of(
        st.fixed_dictionaries({"ip": _TEXT}), st.fixed_dictionaries({"hostname": _TEXT})),
        max_size=2)),
    "ports": st.one_of(st.none(), st.lists(st.fixed_dictionaries({
        "name": _TEXT, "port": _INT, "target_port": st.one_of(_TEXT, _INT),
        "protocol": st.sampled_from(["TCP", "UDP"])}), max_size=3)),
    "selector": st.one_of(st.none(), st.dictionaries(_TEXT, _TEXT, max_size=3))})
_NODE = st.fixed_dictionaries({
    "name": _NAME, "status": _TEXT, "roles": st.one_of(st.none(), st.lists(_TEXT, max_size=2)),
    "age": _AGE, **{key: _TEXT for key in ("version", "internal_ip", "external_ip", "os",
                                           "kernel", "container_runtime")}})
_NAMESPACE = st.one_of(_NAME, st.fixed_dictionaries({"name": _NAME}, optional={
    "status": _TEXT, "createdAt": _TEXT, "labels": st.dictionaries(_TEXT, _TEXT, max_size=2),
    "annotations": st.dictionaries(_TEXT, _TEXT, max_size=2)}))


def _full_dump(schema: type[Schema], items: list[Any]) -> Any:
    """What marshmallow itself makes of the items, field by field."""
    return Schema.from_dict({"items": fields.Nested(schema, many=True)})().dump(
        {"items": items})["items"]


@pytest.mark.parametrize("key, parse, schema, strategy", [
    ("pods", agent_results.pods, PodSchema, _POD),
    ("deployments", agent_results.deployments, DeploymentSchema, _DEPLOYMENT),
    ("services", agent_results.services, ServiceSchema, _SERVICE),
    ("nodes", agent_results.nodes, NodeSchema, _NODE),
    ("namespaces", agent_results.namespaces, NamespaceSchema, _NAMESPACE),
])
def test_parsed_items_are_exactly_what_the_schema_dumps(
        key: str, parse: Callable[[dict[str, Any]], list[Any]], schema: type[Schema],
        strategy: Any) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(strategy, max_size=4))
    def check(agent_items: list[Any]) -> None:
        items = parse({key: agent_items})
        assert _full_dump(schema, items) == items
        assert all(list(item) == list(schema().fields) for item in items)

    check()
