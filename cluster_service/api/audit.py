"""One audit log line per authentication outcome.

Carries the key's fingerprint, never the key, plus the user id, client
address and request id (the last added by the logging filter).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import has_request_context, request

if TYPE_CHECKING:
    from ..domain.users import User

log = logging.getLogger("cluster_service.audit")


def audit_auth(outcome: str, key_fp: str, user: "User | None") -> None:
    """Log one auth outcome: success, rejected, rejected_cached, malformed, backend_error."""
    client = request.remote_addr if has_request_context() else None
    level = logging.INFO if outcome == "success" else logging.WARNING
    log.log(level, "authentication %s", outcome, extra={
        "event": "auth", "outcome": outcome, "key_fp": key_fp,
        "user_id": user.id if user else None, "client": client})
