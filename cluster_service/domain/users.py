"""The user behind an API key, and the User Service's HTTP fallback that can name one.

``User.from_reply`` reads the User Service's ``user_data`` (over the broker or
HTTP) and fails closed; :class:`UserServiceClient` is the fallback the
:class:`~cluster_service.domain.auth.Authenticator` asks when the broker path
gives no verdict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from ..config import Settings
from ..errors import AuthBackendUnavailable, AuthenticationFailed, RemoteError

log = logging.getLogger(__name__)

FALLBACK_PATH = "/api/v1.0/users/me/api-key"


@dataclass(frozen=True)
class User:
    """The authenticated caller, as the User Service describes it."""

    id: int
    username: str
    email: str | None = None
    roles: str | None = None
    is_active: bool = False

    @classmethod
    def from_reply(cls, data: Any) -> "User":
        """Build from ``user_data``; anything unusable is the peer's fault (RemoteError).

        Fail closed: only a JSON ``true`` in ``is_active`` makes an active user. A
        missing or non-boolean value (``0``, ``"false"``, ``null``) is the peer's
        fault and an inactive user, logged once without the body.
        """
        if not isinstance(data, dict):
            raise RemoteError("user_data is missing")
        user_id, username = data.get("id"), data.get("username")
        if isinstance(user_id, bool) or not isinstance(user_id, int) \
                or not isinstance(username, str):
            raise RemoteError("user_data has no valid id or username")
        email, roles, active = data.get("email"), data.get("roles"), data.get("is_active")
        if not isinstance(active, bool):
            log.warning("user data without a boolean is_active, user refused",
                        extra={"event": "peer_fault", "field": "is_active",
                               "value_type": "missing" if "is_active" not in data
                               else type(active).__name__})
        return cls(id=user_id, username=username,
                   email=email if isinstance(email, str) else None,
                   roles=roles if isinstance(roles, str) else None,
                   is_active=active is True)


LICENSE_EXPIRED = "LICENSE_EXPIRED"


def _is_licence_lapse(response: requests.Response) -> bool:
    """Whether a 403 is the licence middleware's (``{"error": "LICENSE_EXPIRED", …}``)."""
    if len(response.content) > 64 * 1024:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == LICENSE_EXPIRED


class UserServiceClient:
    """The HTTP fallback: ``GET {USER_SERVICE_URL}/api/v1.0/users/me/api-key``."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self._url = settings.user_service_url + FALLBACK_PATH
        self._timeout = settings.user_service_timeout
        self._verify: bool | str = settings.user_service_ca_bundle or \
            settings.user_service_verify_ssl
        if session is None:
            session = requests.Session()
            # Never HTTP(S)_PROXY, NO_PROXY or .netrc from the environment: the API key
            # would go to whatever proxy the environment names.
            session.trust_env = False
        self._session = session

    def validate(self, api_key: str) -> User:
        """Return the user, raise AuthenticationFailed (401/403) or AuthBackendUnavailable."""
        try:
            response = self._session.get(self._url, headers={"X-API-Key": api_key},
                                         timeout=self._timeout, verify=self._verify,
                                         allow_redirects=False)
        except requests.RequestException as error:
            log.warning("user service fallback unreachable",
                        extra={"event": "auth_fallback_error", "error_type": type(error).__name__})
            raise AuthBackendUnavailable() from None
        if response.status_code == 403 and _is_licence_lapse(response):
            # The User Service's licence middleware answered before checking the key:
            # the backend is unavailable, the key is neither valid nor rejected.
            log.warning("user service fallback refused: licence expired",
                        extra={"event": "auth_fallback_error", "reason": "license_expired"})
            raise AuthBackendUnavailable()
        if response.status_code in (401, 403):
            raise AuthenticationFailed()
        if response.status_code != 200:
            log.warning("user service fallback answered %s", response.status_code,
                        extra={"event": "auth_fallback_error"})
            raise AuthBackendUnavailable()
        try:
            user = User.from_reply(response.json())
        except (ValueError, RemoteError):
            raise AuthBackendUnavailable() from None
        if not user.is_active:
            raise AuthenticationFailed()
        return user
