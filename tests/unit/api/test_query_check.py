"""The precompiled query check gives what ``Schema.load`` gives, or leaves it to it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from marshmallow import Schema, ValidationError, fields, post_load

from cluster_service.api.operations import ROUTES
from cluster_service.api.query_check import QueryCheck
from cluster_service.api.schemas import ClusterQuery

SCHEMAS = {type(route.query).__name__: route.query for route in ROUTES}

VALUES = st.one_of(
    st.from_regex(r"\A[0-9]{1,21}\Z"), st.from_regex(r"\A[a-z0-9-]{1,70}\Z"),
    st.from_regex(r"\Ademo-agent-[0-9]{1,4}\Z"),
    st.sampled_from(["", " ", "-1", "+5", "1e3", "0", "1000", "1001", "\u0663"]),
    st.text(max_size=40), st.text(min_size=1000, max_size=1100, alphabet="ab"))


def queries(schema: Schema) -> st.SearchStrategy[dict[str, str]]:
    keys = [field.data_key or name for name, field in schema.load_fields.items()]
    return st.dictionaries(st.sampled_from([*keys, "unknown", "agent_ID"]), VALUES, max_size=7)


def outcome(check: QueryCheck, schema: Schema, data: dict[str, str]) -> tuple[Any, Any]:
    try:
        expected: Any = schema.load(data)
    except ValidationError:
        expected = ValidationError
    return check.load(data), expected


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_check_agrees_with_schema_load(name: str, data: st.DataObject) -> None:
    schema = SCHEMAS[name]
    check = QueryCheck(schema)
    assert check.steps is not None, "every route's query schema is checked directly"
    query = data.draw(queries(schema))
    got, expected = outcome(check, schema, query)
    if expected is ValidationError:
        assert got is None  # Schema.load then names the error
    else:
        assert got is None or got == expected
        assert got is not None, "a valid query is checked directly"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_plain_valid_query_takes_the_direct_path(name: str) -> None:
    schema = SCHEMAS[name]
    query = {"agent_id": "demo-agent-1", "cluster_id": "7", "namespace": "default"}
    assert QueryCheck(schema).load(query) == schema.load(query)


def test_a_schema_it_cannot_mirror_is_left_to_schema_load() -> None:
    class WithProcessor(ClusterQuery):
        @post_load
        def upper(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {**data, "agent_id": data["agent_id"].upper()}

    class Dotted(Schema):
        value = fields.String(attribute="a.b")

    for schema in (WithProcessor(), Dotted(), ClusterQuery(many=True)):
        assert QueryCheck(schema).load({"agent_id": "a", "value": "v"}) is None
