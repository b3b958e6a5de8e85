"""Resilience: the real service under gunicorn, with faults injected,
one file per failure family (broker, peers, shutdown); shared helpers in
``tests/support/faults.py``.

Every test runs the real gunicorn service on its own queues against the shared
RabbitMQ, with the stand-in peers. The broker itself is never stopped: a test
that needs the broker to go away points the service at a :class:`TcpProxy`
and closes (or freezes) the proxy, so only this service's connections suffer.

Run alone with ``pytest -m fault``. Every wait polls with a deadline; every
test carries its own time bound. (Saturation under slow and hung agents:
tests/integration/test_slow_agents.py.)
"""
