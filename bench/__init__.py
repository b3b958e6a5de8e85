"""Benchmark harness for the Cluster Service.

``python -m bench`` starts each configuration in turn under gunicorn, drives it
with a real HTTP load generator and prints req/s, latency, errors, RSS per
worker and the target ratios. See ``docs/performance.md``.
"""
