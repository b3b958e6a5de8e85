"""Fixtures of the fault tests (one file per failure family in this folder)."""

from __future__ import annotations

from typing import Iterator

import pytest

from ...support.tcp_proxy import TcpProxy


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """An open TCP proxy to the broker; the service connects through it."""
    with TcpProxy() as running:
        yield running
