"""The list conventions (contract §1): selectors, then ``limit`` / ``continue``.

Applied to the whole list an operation fetched, so one fetch (shared by single
flight) serves every selection of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import InvalidRequest
from .operations import Operation
from .paging import Cursor, Page, page_of, read_token, scope_of
from .selectors import (LABEL_SELECTOR, FieldTerm, LabelRequirement, parse_field_selector,
                        parse_label_selector)


@dataclass(frozen=True)
class Selection:
    """What a client asked of a list: which items, and which page of them."""

    fields: tuple[FieldTerm, ...] = ()
    labels: tuple[LabelRequirement, ...] = ()
    limit: int | None = None
    cursor: Cursor | None = None
    scope: str = ""

    @classmethod
    def parse(cls, op: Operation, *, field_selector: str | None, label_selector: str | None,
              limit: int | None, token: str | None, query: Sequence[Any]) -> "Selection":
        """Check the raw selectors against ``op``; ``query`` identifies the list for tokens."""
        if label_selector and not op.labels:
            raise InvalidRequest(f"{LABEL_SELECTOR}: not supported on /{op.name} "
                                 "(its items carry no labels)")
        # Only pages need the scope (their tokens carry it): no digest for a whole list.
        scope = "" if limit is None and token is None else scope_of(
            op.name, *query, field_selector or "", label_selector or "")
        return cls(
            fields=parse_field_selector(field_selector or "", op.fields),
            labels=parse_label_selector(label_selector or ""),
            limit=limit, cursor=read_token(token, scope) if token is not None else None,
            scope=scope)

    @property
    def paged(self) -> bool:
        """Whether the client asked for pages (``limit``, or ``continue`` for the rest)."""
        return self.limit is not None or self.cursor is not None

    def apply(self, items: Sequence[Mapping[str, Any]], now: float, ttl: float) -> Page:
        """The selected items; paged when asked (else ``next_token`` is None).

        ``continue`` without ``limit`` is the rest of the list, as in Kubernetes.
        """
        selected: Sequence[Mapping[str, Any]] = items
        if self.fields or self.labels:
            selected = [item for item in items if self._matches(item)]
        if not self.paged:
            return Page(list(selected), None)
        return page_of(selected, self.limit or max(1, len(selected)), self.cursor, self.scope,
                       now, ttl)

    def _matches(self, item: Mapping[str, Any]) -> bool:
        if not all(term.matches(item) for term in self.fields):
            return False
        if self.labels:
            labels = item.get("labels") or {}
            return all(requirement.matches(labels) for requirement in self.labels)
        return True
