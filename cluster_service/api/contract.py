"""The HTTP contract's constants (``/work/shared/contract.md``), in one leaf module.

Everything in ``api/`` that names a path, a header or the version reads it
from here, so the OpenAPI builder, the limiter and the views cannot drift,
and nothing needs to import a blueprint to learn a header's name.
"""

from __future__ import annotations

BASE_PATH = "/api/v3.0/cluster"
VERSION = "1.0.0"
API_KEY_HEADER = "X-API-Key"
REQUEST_ID_HEADER = "X-Request-ID"
# A longer query string is refused before any view parses it.
MAX_QUERY_STRING = 2048

# The contract's code and message for each HTTP-level error that no domain error
# names (raised by werkzeug, or answered by the worker before the app sees the request).
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "Invalid request"),
    401: ("authentication_failed", "Authentication failed"),
    403: ("forbidden", "Request forbidden"),
    404: ("not_found", "The requested URL was not found"),
    405: ("method_not_allowed", "The method is not allowed for this URL"),
    413: ("payload_too_large", "Request entity too large"),
    414: ("uri_too_long", "Request URI too long"),
    417: ("expectation_failed", "Expectation failed"),
    429: ("rate_limit_exceeded", "Rate limit exceeded"),
    431: ("request_header_fields_too_large", "Request header fields too large"),
    500: ("internal_error", "Internal server error"),
    501: ("not_implemented", "Not implemented"),
}
