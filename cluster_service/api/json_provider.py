"""Flask's JSON provider, backed by orjson: every JSON body the service writes.

A pods list of thousands of items is most of a request's CPU when serialised
with the standard library; orjson writes it several times faster
(docs/performance.md). Bodies stay what Flask would write: compact, keys in
the order they were built, one trailing newline, UTF-8.
"""

from __future__ import annotations

import decimal
from typing import Any

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_APPEND_NEWLINE


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class OrjsonProvider(DefaultJSONProvider):
    """``jsonify`` and ``app.json`` through orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=_default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(orjson.dumps(obj, default=_default, option=_OPTIONS),
                        mimetype=self.mimetype)


def init_app(app: Flask) -> None:
    """Make orjson the app's JSON provider."""
    app.json = OrjsonProvider(app)
