"""Kubernetes-style ``fieldSelector`` and ``labelSelector``: parse once, match many items.

The syntax is Kubernetes' own (``k8s.io/apimachinery`` ``fields`` and ``labels``),
restricted to what the contract offers:

* field selectors: comma-separated ``field=value``, ``field==value`` and
  ``field!=value`` terms, all of which must hold; ``\\,``, ``\\=`` and ``\\\\``
  escape those characters in a value. Which fields exist depends on the list.
* label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``,
  ``k`` and ``!k``, comma = AND. As in Kubernetes, ``k!=v`` and ``k notin (…)``
  also match items without the label.

Every refusal is an :class:`InvalidRequest` whose message names the selector and
the term it could not accept, so a user sees what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InvalidRequest

FIELD_SELECTOR = "fieldSelector"
LABEL_SELECTOR = "labelSelector"

_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = re.compile(rf"(?:(?P<prefix>{_DNS_SUBDOMAIN})/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"(?:{_LABEL_NAME})?")


@dataclass(frozen=True)
class FieldTerm:
    """One ``field op value`` term; ``key`` is the item's key the field names."""

    key: str
    equal: bool
    value: str

    def matches(self, item: Mapping[str, Any]) -> bool:
        return (item.get(self.key, "") == self.value) is self.equal


@dataclass(frozen=True)
class LabelRequirement:
    """One requirement on an item's labels. ``op``: ``=``, ``!=``, ``in``, ``notin``,
    ``exists`` or ``!`` (does not exist)."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


def parse_field_selector(text: str, fields: Mapping[str, str]) -> tuple[FieldTerm, ...]:
    """Parse ``text``; ``fields`` maps each selectable field to the item key it reads."""
    terms = []
    for raw in _split_unescaped(text):
        if raw.strip() == "":
            if text.strip() == "":
                continue
            raise InvalidRequest(f"{FIELD_SELECTOR}: empty term in {text!r}")
        field, op, value = _split_field_term(raw)
        key = fields.get(field)
        if key is None:
            known = ", ".join(sorted(fields))
            raise InvalidRequest(f"{FIELD_SELECTOR}: unknown field {field!r} "
                                 f"(this list supports {known})")
        terms.append(FieldTerm(key, op != "!=", _unescape(value, raw)))
    return tuple(terms)


def _split_unescaped(text: str) -> list[str]:
    """``text`` split at the commas that no backslash escapes."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _split_field_term(raw: str) -> tuple[str, str, str]:
    index = 0
    while index < len(raw):
        if raw[index] == "\\":
            index += 2
            continue
        for op in ("!=", "==", "="):
            if raw.startswith(op, index):
                field = raw[:index].strip()
                if not field:
                    raise InvalidRequest(f"{FIELD_SELECTOR}: {raw!r} names no field")
                return field, op, raw[index + len(op):]
        index += 1
    raise InvalidRequest(f"{FIELD_SELECTOR}: {raw!r} has no operator (use =, == or !=)")


def _unescape(value: str, term: str) -> str:
    out, index = [], 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            following = value[index + 1:index + 2]
            if following not in ("\\", ",", "="):
                raise InvalidRequest(f"{FIELD_SELECTOR}: {term!r} has an invalid escape "
                                     "(only \\\\, \\, and \\= are allowed)")
            out.append(following)
            index += 2
            continue
        if char == "=":
            raise InvalidRequest(f"{FIELD_SELECTOR}: {term!r} has an unescaped '=' in its value")
        out.append(char)
        index += 1
    return "".join(out)


# -- labels -------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|!|\(|\)|,|>|<)|(?P<word>[^\s!=,()<>]+))")


def _tokens(text: str) -> list[str]:
    tokens, index = [], 0
    text = text.rstrip()
    while index < len(text):
        match = _TOKEN.match(text, index)
        if match is None or match.end() == index:  # only whitespace left: rstrip'd away
            raise InvalidRequest(f"{LABEL_SELECTOR}: cannot read {text[index:]!r}")
        tokens.append(match.group("op") or match.group("word"))
        index = match.end()
    return tokens


def parse_label_selector(text: str) -> tuple[LabelRequirement, ...]:
    """Parse ``text`` into requirements that must all hold (empty: everything)."""
    tokens = _tokens(text)
    if not tokens:
        return ()
    requirements = []
    position = 0
    while True:
        requirement, position = _requirement(tokens, position)
        requirements.append(requirement)
        if position == len(tokens):
            return tuple(requirements)
        if tokens[position] != ",":
            raise InvalidRequest(f"{LABEL_SELECTOR}: expected ',' before {tokens[position]!r}")
        position += 1


def _requirement(tokens: list[str], at: int) -> tuple[LabelRequirement, int]:
    if at >= len(tokens):
        raise InvalidRequest(f"{LABEL_SELECTOR}: a requirement is missing after ','")
    if tokens[at] == "!":
        key = _key(tokens, at + 1)
        return LabelRequirement(key, "!"), at + 2
    key = _key(tokens, at)
    at += 1
    if at == len(tokens) or tokens[at] == ",":
        return LabelRequirement(key, "exists"), at
    op = tokens[at]
    if op in ("=", "==", "!="):
        value = ""
        if at + 1 < len(tokens) and tokens[at + 1] not in (",", "(", ")"):
            value = _value(tokens[at + 1])
            at += 1
        return LabelRequirement(key, "!=" if op == "!=" else "=", frozenset([value])), at + 1
    if op in ("in", "notin"):
        values, at = _value_set(tokens, at + 1, f"{key} {op}")
        return LabelRequirement(key, op, values), at
    raise InvalidRequest(f"{LABEL_SELECTOR}: unsupported operator {op!r} after {key!r} "
                         "(use =, ==, !=, in, notin, or the key alone)")


def _key(tokens: list[str], at: int) -> str:
    if at >= len(tokens) or not _LABEL_KEY.fullmatch(tokens[at]):
        found = tokens[at] if at < len(tokens) else "nothing"
        raise InvalidRequest(f"{LABEL_SELECTOR}: {found!r} is not a valid label key")
    key = tokens[at]
    prefix = _LABEL_KEY.fullmatch(key).group("prefix")  # type: ignore[union-attr]
    if prefix is not None and len(prefix) > 253:
        raise InvalidRequest(f"{LABEL_SELECTOR}: the prefix of {key[:40]!r}… is too long")
    return key


def _value(token: str) -> str:
    if not _LABEL_VALUE.fullmatch(token):
        raise InvalidRequest(f"{LABEL_SELECTOR}: {token!r} is not a valid label value")
    return token


def _value_set(tokens: list[str], at: int, what: str) -> tuple[frozenset[str], int]:
    if at >= len(tokens) or tokens[at] != "(":
        raise InvalidRequest(f"{LABEL_SELECTOR}: {what!r} needs a list in parentheses")
    values: list[str] = []
    at += 1
    while True:
        token = tokens[at] if at < len(tokens) else None
        if token is None or token in ("(", ")", ",", "=", "==", "!=", "!", ">", "<"):
            raise InvalidRequest(f"{LABEL_SELECTOR}: {what!r}: expected a value, "
                                 f"found {token or 'nothing'!r}")
        values.append(_value(token))
        following = tokens[at + 1] if at + 1 < len(tokens) else None
        if following == ")":
            return frozenset(values), at + 2
        if following != ",":
            raise InvalidRequest(f"{LABEL_SELECTOR}: {what!r}: expected ',' or ')' after "
                                 f"{token!r}")
        at += 2
