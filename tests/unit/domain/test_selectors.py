"""fieldSelector and labelSelector: Kubernetes' syntax, every refusal a 400 naming the term."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_service.api.operation_schemas import NamespacesQuery, PodsQuery
from cluster_service.domain.operations import PODS

from cluster_service.domain.selectors import (FieldTerm, LabelRequirement, parse_field_selector,
                                              parse_label_selector)
from cluster_service.errors import InvalidRequest

FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace",
          "status.phase": "status"}


class TestFieldSelector:
    @pytest.mark.parametrize("text, terms", [
        ("", ()),
        ("status.phase=Running", (FieldTerm("status", True, "Running"),)),
        ("status.phase==Running", (FieldTerm("status", True, "Running"),)),
        ("metadata.name!=web,metadata.namespace=default",
         (FieldTerm("name", False, "web"), FieldTerm("namespace", True, "default"))),
        ("metadata.name=", (FieldTerm("name", True, ""),)),
        (r"metadata.name=a\,b\=c\\d", (FieldTerm("name", True, "a,b=c\\d"),)),
    ])
    def test_parses(self, text: str, terms: tuple[FieldTerm, ...]) -> None:
        assert parse_field_selector(text, FIELDS) == terms

    @pytest.mark.parametrize("text, named", [
        ("spec.nodeName=n1", "'spec.nodeName'"),
        ("status.phase<Running", "'status.phase<Running'"),
        ("status.phase", "'status.phase'"),
        ("=Running", "'=Running'"),
        ("metadata.name=a=b", "'metadata.name=a=b'"),
        (r"metadata.name=a\x", r"'metadata.name=a\\x'"),
        ("metadata.name=a,", "empty term"),
    ])
    def test_refuses_naming_the_term(self, text: str, named: str) -> None:
        with pytest.raises(InvalidRequest) as raised:
            parse_field_selector(text, FIELDS)
        assert raised.value.message.startswith("fieldSelector: ")
        assert named in raised.value.message

    def test_terms_are_anded(self) -> None:
        terms = parse_field_selector("metadata.namespace=a,status.phase!=Failed", FIELDS)
        items = [{"name": "p1", "namespace": "a", "status": "Running"},
                 {"name": "p2", "namespace": "a", "status": "Failed"},
                 {"name": "p3", "namespace": "b", "status": "Running"}]
        assert [i["name"] for i in items if all(t.matches(i) for t in terms)] == ["p1"]


class TestLabelSelector:
    @pytest.mark.parametrize("text, requirement", [
        ("env=prod", LabelRequirement("env", "=", frozenset({"prod"}))),
        ("env==prod", LabelRequirement("env", "=", frozenset({"prod"}))),
        ("env!=prod", LabelRequirement("env", "!=", frozenset({"prod"}))),
        ("env in (prod, dev)", LabelRequirement("env", "in", frozenset({"prod", "dev"}))),
        ("env notin (prod)", LabelRequirement("env", "notin", frozenset({"prod"}))),
        ("env", LabelRequirement("env", "exists")),
        ("!env", LabelRequirement("env", "!")),
        ("example.com/tier=web", LabelRequirement("example.com/tier", "=", frozenset({"web"}))),
    ])
    def test_parses_each_form(self, text: str, requirement: LabelRequirement) -> None:
        assert parse_label_selector(text) == (requirement,)

    @pytest.mark.parametrize("labels, text, matched", [
        ({"env": "prod"}, "env=prod", True),
        ({"env": "dev"}, "env=prod", False),
        ({}, "env!=prod", True),  # Kubernetes: != also matches items without the label
        ({"env": "prod"}, "env!=prod", False),
        ({"env": "dev"}, "env in (prod,dev)", True),
        ({}, "env in (prod,dev)", False),
        ({}, "env notin (prod)", True),
        ({"env": "prod"}, "env notin (prod)", False),
        ({"env": ""}, "env", True),
        ({}, "env", False),
        ({}, "!env", True),
        ({"env": "x", "tier": "web"}, "env,tier=web", True),
        ({"env": "x"}, "env,tier=web", False),
    ])
    def test_matches_as_kubernetes_does(self, labels: dict[str, str], text: str,
                                        matched: bool) -> None:
        assert all(r.matches(labels) for r in parse_label_selector(text)) is matched

    @pytest.mark.parametrize("text, named", [
        ("env>1", "'>'"),
        ("env in ()", "expected a value"),
        ("env in (a,)", "expected a value"),
        ("env in (a b)", "expected ',' or ')'"),
        ("env in a", "needs a list"),
        ("-bad=1", "'-bad'"),
        ("env=-bad", "'-bad'"),
        ("env=prod,", "missing after ','"),
        ("env=a b", "expected ','"),
        ("a" * 64 + "=x", "not a valid label key"),
    ])
    def test_refuses_naming_the_term(self, text: str, named: str) -> None:
        with pytest.raises(InvalidRequest) as raised:
            parse_label_selector(text)
        assert raised.value.message.startswith("labelSelector: ")
        assert named in raised.value.message


# -- properties -----------------------------------------------------------------------

_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?", fullmatch=True)
_KEY = st.one_of(_NAME, st.builds(lambda p, n: f"{p}/{n}",
                                  st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}",
                                                fullmatch=True), _NAME))
_VALUES = st.frozensets(_NAME, min_size=1, max_size=3)
_REQUIREMENT = st.one_of(
    st.builds(LabelRequirement, _KEY, st.sampled_from(["=", "!="]),
              st.builds(lambda v: frozenset([v]), _NAME)),
    st.builds(LabelRequirement, _KEY, st.sampled_from(["in", "notin"]), _VALUES),
    st.builds(LabelRequirement, _KEY, st.sampled_from(["exists", "!"])))


def _render(requirement: LabelRequirement) -> str:
    if requirement.op == "exists":
        return requirement.key
    if requirement.op == "!":
        return f"!{requirement.key}"
    if requirement.op in ("=", "!="):
        return f"{requirement.key}{requirement.op}{next(iter(requirement.values))}"
    return f"{requirement.key} {requirement.op} ({', '.join(sorted(requirement.values))})"


def _reference(requirement: LabelRequirement, labels: dict[str, Any]) -> bool:
    """Kubernetes' semantics, written independently of the implementation."""
    if requirement.op == "exists":
        return requirement.key in labels
    if requirement.op == "!":
        return requirement.key not in labels
    if requirement.op in ("=", "in"):
        return labels.get(requirement.key, object()) in requirement.values
    return labels.get(requirement.key, object()) not in requirement.values


@given(st.lists(_REQUIREMENT, min_size=1, max_size=4),
       st.dictionaries(_KEY, _NAME, max_size=4))
def test_rendered_selectors_parse_back_and_match_as_kubernetes(
        requirements: list[LabelRequirement], labels: dict[str, str]) -> None:
    parsed = parse_label_selector(",".join(_render(r) for r in requirements))
    assert parsed == tuple(requirements)
    assert all(r.matches(labels) for r in parsed) == \
        all(_reference(r, labels) for r in requirements)


@given(st.text(max_size=40))
def test_any_text_is_a_selector_or_a_400(text: str) -> None:
    for parse in (parse_label_selector, lambda t: parse_field_selector(t, FIELDS)):
        try:
            parse(text)
        except InvalidRequest as error:
            assert error.http_status == 400


# The OpenAPI document's patterns promise a grammar: whatever matches them parses.
_PATTERNS = [(query.fields[name].metadata["pattern"], fields, name)
             for query, fields in ((PodsQuery(), PODS.fields), (NamespacesQuery(), None))
             for name in ("field_selector", "label_selector")]


@pytest.mark.parametrize("pattern, fields, name", _PATTERNS)
def test_what_the_documented_pattern_admits_parses(pattern: str, fields: Any,
                                                   name: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.from_regex(pattern, fullmatch=True).filter(lambda text: len(text) <= 256))
    def check(text: str) -> None:
        if name == "label_selector":
            parse_label_selector(text)
        else:
            parse_field_selector(text, fields or {"metadata.name": "name",
                                                  "metadata.namespace": "namespace"})

    check()
