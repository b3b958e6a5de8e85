"""gunicorn settings, derived from the same validated settings as the app.

Why these choices:
* ``gthread`` workers, sized for waiting: a cluster call spends 0.2 s to a few
  seconds waiting for the agent and a millisecond or two of CPU, so a request in
  flight costs a blocked thread and a little memory, not a core. Defaults:
  ``WEB_CONCURRENCY=3`` workers x ``GUNICORN_THREADS=256`` threads for a pod of 1
  CPU and 512 MB. Three workers rather than two, though the pod has one CPU: every
  request is several thread wake-ups (main loop, request thread, I/O thread), each
  waiting for its worker's GIL, and a third worker spreads those queues thinner
  (measured: docs/operations.md section 6). Little's law: 256 clients of a 1 s
  agent need 256 requests in flight; each worker can hold all of them, because
  keep-alive connections do not spread evenly over workers. Threads are started on
  demand and an idle one costs ~90 KB of RSS (measured, docs/operations.md), so
  the ceiling is cheap. /health and /ready never wait for a thread: each worker's
  main loop answers them itself (``cluster_service/server/worker.py``); a hung
  agent stops taking threads once its circuit breaker opens
  (``concurrency/breaker.py``), and a request that finds no thread within
  ``REQUEST_QUEUE_TIMEOUT`` gets 503 instead of waiting longer.
  ``worker_connections`` stays above ``threads`` so keep-alive stays on.
* ``timeout`` and ``graceful_timeout`` exceed the longest request we can hold
  (``Settings.worker_timeout`` and ``worker_graceful_timeout``, from
  ``longest_request``: connect wait, auth with its fallback, then
  ``WEBSOCKET_TIMEOUT``, which holds the slot waits), so neither gunicorn's watchdog nor a
  rolling update cuts a request that is still within its own timeout.
* no ``preload_app``: the app (and its broker connection) is created in each
  worker after fork; ``post_worker_init`` starts the connection, ``worker_exit``
  closes it cleanly once in-flight requests have finished.
* Prometheus multiprocess mode: the metrics directory is set here, in the
  master, before any worker imports prometheus_client, wiped at start, and
  dead workers are marked in ``child_exit``.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from typing import Any

from dotenv import load_dotenv

# The package lives beside this file; make it importable whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
load_dotenv(".env")  # the working directory's .env only, never a parent's

from cluster_service.config import settings_or_exit  # noqa: E402

_settings = settings_or_exit()

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = [f"{_host}:{_settings.port}"]
# gthread whose main loop keeps the pod answerable under load (cluster_service/server/worker.py):
# headers read there within HEADER_READ_TIMEOUT and MAX_HEADER_BYTES, the probes answered
# there, a request with no thread within REQUEST_QUEUE_TIMEOUT answered 503 there, stalled
# writes cut after WRITE_STALL_TIMEOUT, idle connections closed for new ones at the limit.
worker_class = "cluster_service.server.worker.HeaderTimeoutWorker"
workers = _settings.web_concurrency
threads = _settings.gunicorn_threads
# Open connections per worker; those above ``threads`` are idle keep-alive ones. Beyond
# it the worker closes the oldest idle connection for a new one (or answers it 503).
worker_connections = max(1000, 2 * threads)
# One listening socket shared by the workers, and the worker class keeps the
# connections evenly spread over them (cluster_service/server/spread.py): with
# stock gthread whichever worker wakes first accepts, and most keep-alive
# connections of a burst ended up on one worker, whose GIL then set the pace;
# SO_REUSEPORT (one socket per worker) spreads by a hash, even only on average
# (docs/performance.md, "Connections per worker").
reuse_port = False
timeout = _settings.worker_timeout
graceful_timeout = _settings.worker_graceful_timeout
keepalive = 5
preload_app = False
# gunicorn >= 25 opens a control socket under $HOME by default: it breaks a
# read-only root filesystem and collides between instances on one host.
control_socket_disable = True

# Request limits: oversized request lines and headers get gunicorn's own 4xx,
# never reach the app, never cost a worker.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

if _settings.use_ssl:
    certfile = _settings.ssl_certfile
    keyfile = _settings.ssl_keyfile

# The app writes one JSON access line per request (with the key fingerprint);
# gunicorn's own access log is off unless GUNICORN_ACCESS_LOG names a target.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = ('%(h)s "%(r)s" %(s)s %(b)s %(M)sms '
                     'request_id=%({x-request-id}o)s')
errorlog = "-"
loglevel = "info"  # gunicorn's own debug output is a config dump; DEBUG is for the app

if _settings.metrics_enabled:
    _metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
        tempfile.gettempdir(), f"cluster_service_metrics_{_settings.port}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    raw_env = [f"PROMETHEUS_MULTIPROC_DIR={_metrics_dir}"]


def on_starting(server: Any) -> None:
    """Warn about risky settings; wipe the metrics of a previous run before the first worker."""
    for warning in _settings.startup_warnings():
        server.log.warning("cluster_service: %s", warning)
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


# Every RPC hands work between threads twice (request thread -> the amqp-io thread
# that owns the connection -> back). A thread woken while another holds the GIL
# waits up to the switch interval for it: CPython's 5 ms default added several ms
# to every request against 0.2 s agents; 0.5 ms measured better (docs/performance.md).
GIL_SWITCH_INTERVAL = 0.0005


def post_worker_init(worker: Any) -> None:
    """Connect to the broker in the worker, after fork, before serving; then freeze the
    objects made so far out of the garbage collector's reach.

    Why freeze: every object alive after start-up (modules, the app, its routes and
    schemas: most of the heap) lives as long as the worker, yet each full collection
    walked all of them, holding the GIL, and so stopped every thread of the worker:
    pauses of 40-100 ms every few seconds under load, the tail of every request in
    flight and of the probes. Frozen, a full collection walks only what requests made
    (docs/performance.md, "Slow agents").
    """
    from cluster_service.api.extension import start

    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    start(worker.wsgi)
    gc.freeze()


def worker_exit(server: Any, worker: Any) -> None:
    """Close the broker connection cleanly once the worker's requests are done, then write
    the worker's last batched metric updates."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        from cluster_service.api.extension import stop

        stop(app)
    metrics = sys.modules.get("cluster_service.observability.metrics")
    if metrics is not None:
        metrics.BATCH.flush()


def child_exit(server: Any, worker: Any) -> None:
    """Free the worker's row in the spread table; tell prometheus_client it is gone, so
    its live gauges stop counting."""
    release = getattr(worker, "release_spread_row", None)
    if release is not None:
        release()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
