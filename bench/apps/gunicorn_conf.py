"""Minimal gunicorn config for the reference apps, mirroring the service's.

The harness also passes ``--workers``, ``--threads`` and ``--bind`` on the
command line, for these apps and for the service alike, so every configuration
runs with the same worker and thread counts; the worker class comes from each
config file (stock gthread here, the service's gthread subclass there). ``keepalive`` matches the
service's ``gunicorn.conf.py``; the control socket is off as there, so that
several instances on one host do not collide.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
keepalive = 5
control_socket_disable = True
loglevel = "warning"
accesslog = None
