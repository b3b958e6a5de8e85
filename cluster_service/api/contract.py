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
