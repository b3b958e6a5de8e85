"""Minimal gunicorn config for the reference apps.

The harness also passes ``--workers``, ``--threads``, ``--worker-class`` and
``--bind`` on the command line, for these apps and for the service alike, so
every configuration runs with the same settings.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
loglevel = "warning"
accesslog = None
