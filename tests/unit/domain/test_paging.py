"""limit / continue: every item exactly once across pages, or 410; never a different list."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster_service.domain.listing import Selection
from cluster_service.domain.operations import NAMESPACES, NODES, PODS
from cluster_service.domain.paging import Cursor, page_of, read_token, scope_of
from cluster_service.errors import ContinueExpired, InvalidRequest

NOW = 1_800_000_000.0
TTL = 300.0


def pods(*names: str, namespace: str = "default") -> list[dict[str, Any]]:
    return [{"name": name, "namespace": namespace, "status": "Running", "node": "n1"}
            for name in names]


def cursor(token: str | None, scope: str = "s") -> Cursor | None:
    return read_token(token, scope) if token is not None else None


def walk(items: list[dict[str, Any]], limit: int, scope: str = "s") -> list[Any]:
    pages: list[Any] = []
    token = None
    while True:
        page = page_of(items, limit, cursor(token, scope), scope, NOW, TTL)
        pages.append(page.items)
        token = page.next_token
        if token is None:
            return pages


class TestPages:
    def test_sorted_by_namespace_then_name_and_each_item_once(self) -> None:
        items = pods("b", "a", namespace="z") + pods("c", "a")
        pages = walk(items, 3)
        assert [[(i["namespace"], i["name"]) for i in page] for page in pages] == [
            [("default", "a"), ("default", "c"), ("z", "a")], [("z", "b")]]

    def test_last_page_has_no_token(self) -> None:
        page = page_of(pods("a", "b"), 2, None, "s", NOW, TTL)
        assert len(page.items) == 2 and page.next_token is None

    def test_empty_list_is_one_empty_page(self) -> None:
        assert page_of([], 5, None, "s", NOW, TTL).items == []

    @given(st.sets(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=40),
           st.integers(1, 12))
    def test_any_list_any_limit_every_item_exactly_once(self, names: set[str],
                                                        limit: int) -> None:
        items = pods(*names)
        served = [item["name"] for page in walk(items, limit) for item in page]
        assert served == sorted(names)


class TestTokens:
    def first_token(self, items: list[dict[str, Any]], scope: str = "s") -> str:
        token = page_of(items, 1, None, scope, NOW, TTL).next_token
        assert token is not None
        return token

    def test_a_changed_list_is_410(self) -> None:
        token = self.first_token(pods("a", "b", "c"))
        with pytest.raises(ContinueExpired):
            page_of(pods("a", "b", "c", "d"), 1, cursor(token), "s", NOW + 1, TTL)
        with pytest.raises(ContinueExpired):
            page_of(pods("a", "c"), 1, cursor(token), "s", NOW + 1, TTL)

    def test_changed_fields_of_the_same_items_are_served_fresh(self) -> None:
        token = self.first_token(pods("a", "b"))
        fresh = pods("a", "b")
        fresh[1]["status"] = "Failed"
        assert page_of(fresh, 1, cursor(token), "s", NOW + 1, TTL).items == [fresh[1]]

    def test_an_old_token_is_410(self) -> None:
        token = self.first_token(pods("a", "b"))
        assert page_of(pods("a", "b"), 1, cursor(token), "s", NOW + TTL, TTL).items
        with pytest.raises(ContinueExpired):
            page_of(pods("a", "b"), 1, cursor(token), "s", NOW + TTL + 1, TTL)

    def test_a_token_from_the_future_is_410(self) -> None:
        token = self.first_token(pods("a", "b"))
        with pytest.raises(ContinueExpired):
            page_of(pods("a", "b"), 1, cursor(token), "s", NOW - 3600, TTL)

    def test_the_walk_keeps_its_start_time(self) -> None:
        items = pods("a", "b", "c")
        token = page_of(items, 1, None, "s", NOW, TTL).next_token
        token = page_of(items, 1, cursor(token), "s", NOW + 200, TTL).next_token
        with pytest.raises(ContinueExpired):  # 301 s after the first page, not the second
            page_of(items, 1, cursor(token), "s", NOW + 301, TTL)

    def test_a_token_of_another_query_is_410(self) -> None:
        token = self.first_token(pods("a", "b"), scope="one")
        with pytest.raises(ContinueExpired):
            read_token(token, "two")

    @pytest.mark.parametrize("token", [
        "x", "!!!", base64.urlsafe_b64encode(b"[1,2,3]").decode(),
        base64.urlsafe_b64encode(json.dumps([1, "s", "f", ["a"], 1]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([9, "s", "f", ["a", "b"], 1]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, "s", "f", ["a", "b"], 1.5]).encode()).decode(),
    ])
    def test_a_token_that_cannot_be_read_is_410(self, token: str) -> None:
        with pytest.raises(ContinueExpired):
            read_token(token, "s")


class TestSelection:
    def test_selectors_then_pages(self) -> None:
        selection = Selection.parse(PODS, field_selector="status.phase=Running",
                                    label_selector=None, limit=1, token=None, query=("a",))
        items = pods("a", "b") + [{"name": "c", "namespace": "default", "status": "Failed"}]
        page = selection.apply(items, NOW, TTL)
        assert [i["name"] for i in page.items] == ["a"] and page.next_token

    def test_without_limit_the_list_keeps_its_order_and_has_no_token(self) -> None:
        selection = Selection.parse(PODS, field_selector=None, label_selector=None,
                                    limit=None, token=None, query=())
        page = selection.apply(pods("b", "a"), NOW, TTL)
        assert [i["name"] for i in page.items] == ["b", "a"] and page.next_token is None

    def test_label_selector_only_where_items_carry_labels(self) -> None:
        with pytest.raises(InvalidRequest, match="^labelSelector: not supported on /nodes"):
            Selection.parse(NODES, field_selector=None, label_selector="a=b", limit=None,
                            token=None, query=())
        selection = Selection.parse(NAMESPACES, field_selector=None, label_selector="env=prod",
                                    limit=None, token=None, query=())
        items = [{"name": "a", "labels": {"env": "prod"}}, {"name": "b", "labels": {}}]
        assert [i["name"] for i in selection.apply(items, NOW, TTL).items] == ["a"]

    def test_pod_only_fields_are_refused_on_other_lists(self) -> None:
        with pytest.raises(InvalidRequest, match="unknown field 'status.phase'"):
            Selection.parse(NODES, field_selector="status.phase=Running", label_selector=None,
                            limit=None, token=None, query=())

    def test_continue_without_limit_gives_the_rest(self) -> None:
        items = pods("a", "b", "c")
        first = Selection.parse(PODS, field_selector=None, label_selector=None, limit=1,
                                token=None, query=()).apply(items, NOW, TTL)
        rest = Selection.parse(PODS, field_selector=None, label_selector=None, limit=None,
                               token=first.next_token, query=()).apply(items, NOW, TTL)
        assert [i["name"] for i in rest.items] == ["b", "c"] and rest.next_token is None

    def test_a_bad_token_is_refused_before_anything_is_fetched(self) -> None:
        with pytest.raises(ContinueExpired):
            Selection.parse(PODS, field_selector=None, label_selector=None, limit=1,
                            token="x", query=())

    def test_the_scope_covers_the_query_and_selectors(self) -> None:
        def scope(*query: Any, fs: str | None = None) -> str:
            return Selection.parse(PODS, field_selector=fs, label_selector=None, limit=1,
                                   token=None, query=query).scope
        assert scope("a", 1) == scope("a", 1)
        assert len({scope("a", 1), scope("b", 1), scope("a", 2),
                    scope("a", 1, fs="metadata.name=x")}) == 4
        assert scope_of("x") != scope_of("y")
