"""One audit log line per authentication outcome.

Carries the key's fingerprint, never the key, plus the user id and the client
address the caller passed (the request id is added by the logging filter).
The Authenticator calls it directly: no Flask, nothing injected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .users import User

log = logging.getLogger("cluster_service.audit")


def audit_auth(outcome: str, key_fp: str, user: "User | None", client: str | None) -> None:
    """Log one auth outcome: success, rejected, rejected_cached, malformed, blocked,
    backend_error."""
    level = logging.INFO if outcome == "success" else logging.WARNING
    log.log(level, "authentication %s", outcome, extra={
        "event": "auth", "outcome": outcome, "key_fp": key_fp,
        "user_id": user.id if user else None, "client": client})
