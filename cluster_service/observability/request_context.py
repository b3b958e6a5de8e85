"""Per-request context that must reach layers which know nothing of Flask.

The request id is kept in a ContextVar so the RPC layer can put it into the
AMQP ``x-request-id`` header and every log line can carry it, without those
layers importing Flask.
"""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def current_request_id() -> str:
    """The id of the request this thread is serving, or ``-`` outside a request."""
    return request_id_var.get()
