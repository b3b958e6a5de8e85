"""The WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``.

This is a process edge, so it is one of the two places that read ``.env``.
Importing it builds the app but connects to nothing: gunicorn imports it in
each worker after fork, and the broker connection starts in ``post_worker_init``
(or on first use).
"""

from __future__ import annotations


from dotenv import load_dotenv

from cluster_service import create_app
from cluster_service.config import settings_or_exit
from cluster_service.observability.logging_config import configure_logging

load_dotenv(".env")  # the working directory's .env only, never a parent's
_settings = settings_or_exit()
configure_logging(_settings)
app = create_app(_settings)
