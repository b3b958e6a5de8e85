"""Metric names: those a PromQL expression uses, and those metrics.py exports."""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from cluster_service.observability import metrics

# Words of PromQL that are not metric names.
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                 "bool", "and", "or", "unless", "le", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (labels, ranges, functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n.lower() not in _PROMQL_WORDS}


def exported_sample_names() -> tuple[set[str], set[str]]:
    """(every sample name metrics.py can expose, every metric family name)."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created")}
    samples, families = set(), set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families.add(family.name)
                samples |= {family.name + suffix for suffix in suffixes[family.type]}
    return samples, families
