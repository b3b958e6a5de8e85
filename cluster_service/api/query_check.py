"""Query strings checked by their schema's own fields, without a full ``Schema.load``.

Why: the hot endpoints check a query of two to six fields on every request, and
most of ``Schema.load``'s cost is its machinery (processors, error store, unknown
fields, field and schema validators), not the fields. A :class:`QueryCheck` is
built once per schema from its ``load_fields``: for each field, in the schema's
order, it calls that field's own ``deserialize`` (its conversion, load default
and validators) on the value ``Schema.load`` would see, and keeps what the
schema would keep. It applies only to schemas it can mirror exactly (unknown
fields excluded, no processors or schema validators, plain attribute names);
any error, and every other schema, goes to ``Schema.load`` itself, so errors and
their messages are marshmallow's. ``tests/unit/api/test_query_check.py`` checks the two
agree on generated queries.
"""

from __future__ import annotations

from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, missing
from marshmallow.fields import Field


class QueryCheck:
    """The fields of one query schema, ready to run without ``Schema.load``."""

    __slots__ = ("schema", "names", "steps")

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        # The names a query gives its fields (a repeated one is refused before loading).
        self.names = tuple(name for name in (field.data_key or field.name
                                             for field in schema.fields.values())
                           if name is not None)
        # (the name in the query, the name in the result, the field)
        self.steps: tuple[tuple[str, str, Field[Any]], ...] | None = (
            tuple((field.data_key or name, field.attribute or name, field)
                  for name, field in schema.load_fields.items())
            if mirrors_load(schema) else None)

    def load(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """What ``schema.load(data)`` returns, or None when only ``Schema.load`` can tell
        (an invalid or missing value, or a schema this check does not mirror).

        ``data`` is a plain dict (a werkzeug MultiDict raises, expensively, inside
        ``get`` for every absent key)."""
        steps = self.steps
        if steps is None:
            return None
        out: dict[str, Any] = {}
        try:
            for key, attribute, field in steps:
                value = field.deserialize(data.get(key, missing), key, data)
                if value is not missing:
                    out[attribute] = value
        except ValidationError:
            return None
        return out


def mirrors_load(schema: Schema) -> bool:
    """Whether calling the fields one by one gives what ``schema.load`` gives."""
    hooks = getattr(schema, "_hooks", None)
    return (schema.unknown == EXCLUDE and not schema.many and not schema.partial
            and hooks is not None and not any(hooks.values())
            and not any("." in (field.attribute or name)
                        for name, field in schema.load_fields.items()))
