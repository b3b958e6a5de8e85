"""``X-Request-ID``: accept a sane one from the client, otherwise make one.

The id is kept in a ContextVar (``context.request_id_var``) for the duration
of the request so logs and the AMQP ``x-request-id`` header carry it. The
request hooks (``request_cycle.py``) set it, echo it and reset it.
"""

from __future__ import annotations

import re
import uuid

_SANE = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
# The WSGI environ key of the request's X-Request-ID (contract.REQUEST_ID_HEADER).
ENVIRON_KEY = "HTTP_X_REQUEST_ID"


def choose_request_id(sent: str | None) -> str:
    """The client's id if it is short and plain, else a new uuid4."""
    if sent and _SANE.match(sent):
        return sent
    return str(uuid.uuid4())
