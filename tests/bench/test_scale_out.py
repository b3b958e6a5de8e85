"""The scale-out scenario's arithmetic: counters read from a real exposition, and its targets."""

from __future__ import annotations

from bench.scale_out import counters, misses, table

NAMES = {"AUTH_REQUEST_QUEUE": "b-auth"}
EXPOSITION = """\
# HELP cluster_rpc_published_total RPC request messages published
# TYPE cluster_rpc_published_total counter
cluster_rpc_published_total{queue="b-auth"} 2.0
cluster_rpc_published_total{queue="b-ns"} 98.0
cluster_rpc_replies_received_total{via="fixed"} 100.0
cluster_rpc_replies_received_total{via="relayed"} 80.0
cluster_rpc_replies_dropped_total{reason="owner_gone"} 3.0
cluster_rpc_replies_dropped_total{reason="not_owner"} 0.0
cluster_rpc_replies_dropped_total{reason="unknown"} 4.0
cluster_rpc_replies_rerouted_total{route="direct"} 83.0
cluster_rpc_replies_rerouted_total{route="broadcast"} 1.0
cluster_saturated_total{scope="worker"} 2.0
"""


def test_counters_sum_the_samples_the_scenario_needs() -> None:
    assert counters(EXPOSITION, NAMES) == {
        "published": 100.0, "auth_published": 2.0, "received": 180.0, "owner_gone": 3.0,
        "not_owner": 0.0, "direct": 83.0, "broadcast": 1.0, "saturated": 2.0}


def cell(per_reply: float | None, auth: float, cache: bool = True) -> dict[str, object]:
    return {"replicas": 2, "workers": 3, "auth_cache": cache, "deliveries_per_reply": per_reply,
            "auth_rpcs_for_the_key": auth, "rps": 1.0, "forwarded": 1.0, "broadcast": 0.0,
            "not_owner": 0.0, "errors": 0}


def test_targets() -> None:
    assert misses([cell(1.83, 1)]) == []
    assert len(misses([cell(5.6, 6)])) == 2
    assert misses([cell(1.9, 6, cache=False)]) == []  # the key target needs the cache
    assert "| 2 x 3 | 1 | 1.83 |" in table([cell(1.83, 1)])
