"""The WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

This is a process edge, so it is one of the two places that read ``.env``.
Importing it builds the app but connects to nothing: gunicorn imports it in
each worker after fork, and the broker connection starts in ``post_worker_init``
(or on first use).
"""

from __future__ import annotations

import sys

from dotenv import load_dotenv

from cluster_service import create_app
from cluster_service.config import ConfigError, load_settings
from cluster_service.observability.logging_config import configure_logging

load_dotenv(".env")  # the working directory's .env only, never a parent's
try:
    _settings = load_settings()
except ConfigError as error:
    print(f"cluster_service: configuration error: {error}", file=sys.stderr)
    sys.exit(2)
configure_logging(_settings)
app = create_app(_settings)
