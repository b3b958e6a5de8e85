"""The configurations the harness compares, in the order it runs them."""

from __future__ import annotations

from dataclasses import dataclass

API = "/api/v3.0/cluster"
API_KEY = "demo-key"  # the stand-in peers' default key
AGENT_PREFIX = "demo-agent-"  # the stand-in peers name agents demo-agent-1..N


@dataclass(frozen=True)
class BenchConfig:
    """One thing to start under gunicorn and load."""

    name: str
    description: str
    app: str  # gunicorn's APP_MODULE
    gunicorn_conf: str  # relative to the repository root
    path: str  # what the load asks for; with spread, the agent number is appended
    ready_path: str
    service: bool = False  # the Cluster Service itself (metrics, queue names, ...)
    peers: str = ""  # "responder", "devpeers" or nothing
    spread: bool = False  # spread the load over --agents agents
    auth_cache_ttl: str = "300"
    probe_path: str = ""  # must answer 200 before loading (peers are up)


BENCH_CONF = "bench/apps/gunicorn_conf.py"
SERVICE_CONF = "gunicorn.conf.py"

CONFIGS: tuple[BenchConfig, ...] = (
    BenchConfig("hello", "bare Flask app returning a small JSON",
                "bench.apps.hello:app", BENCH_CONF, "/", "/"),
    BenchConfig("bare-rpc", "bare Flask app, one pika RPC per request (connection per thread)",
                "bench.apps.bare_rpc:app", BENCH_CONF, "/", "/", peers="responder"),
    BenchConfig("bare-namespaces", "bare Flask app, one namespaces RPC per request to the "
                "stand-in peers, the service's response body (the like-for-like anchor)",
                "bench.apps.bare_rpc:app", BENCH_CONF, f"/namespaces?agent_id={AGENT_PREFIX}",
                "/namespaces?agent_id=demo-agent-1", peers="devpeers", spread=True),
    BenchConfig("health", "service GET /health",
                "wsgi:app", SERVICE_CONF, f"{API}/health", f"{API}/ready", service=True),
    BenchConfig("namespaces", "service GET /namespaces, warm auth cache, spread over agents",
                "wsgi:app", SERVICE_CONF, f"{API}/namespaces?agent_id={AGENT_PREFIX}",
                f"{API}/ready", service=True, peers="devpeers", spread=True,
                probe_path=f"{API}/namespaces?agent_id={AGENT_PREFIX}1"),
    BenchConfig("namespaces-hot", "service GET /namespaces, warm auth cache, one agent",
                "wsgi:app", SERVICE_CONF, f"{API}/namespaces?agent_id={AGENT_PREFIX}1",
                f"{API}/ready", service=True, peers="devpeers",
                probe_path=f"{API}/namespaces?agent_id={AGENT_PREFIX}1"),
    BenchConfig("bare-pods", "bare Flask app, one get-pods RPC per request to the stand-in "
                "peers, the service's pod fields (bench/apps/bare_ops.py)",
                "bench.apps.bare_ops:app", BENCH_CONF, f"/pods?agent_id={AGENT_PREFIX}",
                "/pods?agent_id=demo-agent-1", peers="devpeers", spread=True),
    BenchConfig("pods", "service GET /pods (every namespace), warm auth cache, spread over "
                "agents", "wsgi:app", SERVICE_CONF, f"{API}/pods?agent_id={AGENT_PREFIX}",
                f"{API}/ready", service=True, peers="devpeers", spread=True,
                probe_path=f"{API}/pods?agent_id={AGENT_PREFIX}1"),
    BenchConfig("namespaces-cold-auth", "service GET /namespaces, AUTH_CACHE_TTL=0, spread",
                "wsgi:app", SERVICE_CONF, f"{API}/namespaces?agent_id={AGENT_PREFIX}",
                f"{API}/ready", service=True, peers="devpeers", spread=True,
                auth_cache_ttl="0", probe_path=f"{API}/namespaces?agent_id={AGENT_PREFIX}1"),
)

BY_NAME = {c.name: c for c in CONFIGS}
