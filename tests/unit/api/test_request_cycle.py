"""The request hooks: one of each kind, for every request, probes included."""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest
from flask import Flask

from cluster_service.app import _check_no_coroutines
from cluster_service.observability.request_context import current_request_id

from ...conftest import BASE


def test_one_hook_of_each_kind(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATE_LIMIT_ENABLED="true")
    for hooks in (app.before_request_funcs, app.after_request_funcs,
                  app.teardown_request_funcs):
        assert {name: len(funcs) for name, funcs in hooks.items() if funcs} == {None: 1}


@pytest.mark.parametrize("path, status", [(f"{BASE}/health", 200), (f"{BASE}//health", 404),
                                          (f"{BASE}/namespaces?agent_id=%ff", 400)])
def test_refused_before_the_view_still_gets_the_id_and_the_reset(
        make_app: Callable[..., Flask], path: str, status: int) -> None:
    response = make_app().test_client().get(path, headers={"X-Request-ID": "cycle-1",
                                                           "X-API-Key": "demo-key"})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "cycle-1"
    if status != 200:
        assert response.get_json()["request_id"] == "cycle-1"
    assert current_request_id() == "-"  # the ContextVar is reset after the request


def test_an_async_view_is_refused_at_start(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    async def view() -> str:
        await asyncio.sleep(0)
        return "never"

    app.add_url_rule("/async", view_func=view)
    with pytest.raises(RuntimeError, match="view"):
        _check_no_coroutines(app)
