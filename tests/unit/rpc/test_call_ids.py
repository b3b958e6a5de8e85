"""The request id format: a version-8 UUID that names the reply queue of its owner."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, strategies as st

from cluster_service.rpc.call_ids import (is_legacy_id, new_call_id, new_token,
                                          owner_token, reply_queue_name)

QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")  # what config.py accepts for queues


class TestFormat:
    def test_is_a_canonical_rfc9562_version_8_uuid(self) -> None:
        request_id = new_call_id(new_token())
        parsed = uuid.UUID(request_id)
        assert parsed.version == 8
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == request_id

    def test_carries_its_token(self) -> None:
        token = new_token()
        assert re.fullmatch(r"[0-9a-f]{12}", token)
        assert all(owner_token(new_call_id(token)) == token for _ in range(100))

    def test_ids_of_one_token_differ(self) -> None:
        token = new_token()
        assert len({new_call_id(token) for _ in range(10_000)}) == 10_000

    def test_reply_queue_name_is_a_valid_queue_name_unique_per_token(self) -> None:
        a, b = new_token(), new_token()
        assert QUEUE_NAME.match(reply_queue_name(a))
        assert reply_queue_name(a) != reply_queue_name(b)

    def test_an_uppercased_id_still_names_its_owner(self) -> None:
        token = new_token()
        assert owner_token(new_call_id(token).upper()) == token


class TestRejection:
    @pytest.mark.parametrize("value", [
        None, 7, 3.5, b"bytes", [], {}, "", "garbage", "x" * 36,
        str(uuid.uuid4()), str(uuid.uuid1()),
        "0123abcd-4567-8abc-9def-0123456789ab",  # v8 of another layout
        "0123abcd-4567-85c1-cdef-0123456789ab",  # our marker, wrong variant
        "0123abcd4567-85c1-9def-0123456789abcd",  # hyphens misplaced
        "urn:uuid:0123abcd-4567-85c1-9def-0123456789ab",
        "0123abcd-4567-85c1-9def-0123456789ab\n",
    ])
    def test_anything_else_has_no_owner(self, value: object) -> None:
        assert owner_token(value) is None

    @given(st.one_of(st.text(max_size=60), st.binary(max_size=60), st.integers(),
                     st.none(), st.floats()))
    def test_never_raises(self, value: object) -> None:
        owner_token(value)
        is_legacy_id(value)

    def test_legacy_ids_are_version_4_only(self) -> None:
        assert is_legacy_id(str(uuid.uuid4()))
        assert not is_legacy_id(new_call_id(new_token()))
        assert not is_legacy_id(str(uuid.uuid1()))
        assert not is_legacy_id("not an id")
        assert not is_legacy_id(None)
