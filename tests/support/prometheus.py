"""Read values out of a Prometheus text exposition (the service's /metrics)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from .service import ServiceProcess

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match or match.group(1) != name:
            continue
        found = dict(_LABEL.findall(match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(3))
    return total


def metrics_text(service: "ServiceProcess") -> str:
    """The service's ``/metrics`` page (Prometheus text)."""
    return requests.get(service.base_url + "/metrics", timeout=10).text


def metric(service: "ServiceProcess", name: str, **labels: str) -> float:
    """The sum of the ``/metrics`` samples called ``name`` whose labels include ``labels``."""
    return metric_sum(metrics_text(service), name, **labels)


def settled_metric(service: "ServiceProcess", name: str, timeout: float = 10.0,
                   **labels: str) -> float:
    """``metric`` once every worker has written its batched updates: two reads more than a
    flush interval apart (``observability/metric_batch.py``) that agree."""
    from cluster_service.observability.metric_batch import FLUSH_EVERY_S

    from .service import wait_for

    last: list[float] = []

    def agreed() -> bool:
        last.append(metric(service, name, **labels))
        return len(last) > 1 and last[-1] == last[-2]

    wait_for(agreed, timeout, interval=FLUSH_EVERY_S + 0.1, what=f"{name} to settle")
    return last[-1]
