"""The results table, the target ratios and the JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RSS_LIMIT_MB = 80.0
RSS_REQUESTS = 20000


@dataclass(frozen=True)
class Check:
    """One target and what this run measured for it."""

    target: str
    value: float | None
    status: str  # PASS, MISS, n/a or REPORTED
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "value": self.value, "status": self.status,
                "note": self.note}


def _ok(result: dict[str, Any] | None) -> bool:
    return result is not None and "error" not in result and bool(result.get("rps"))


def _ratio(results: dict[str, dict[str, Any]], num: str, den: str, bound: float) -> Check:
    target = f"{num} >= {bound:g} x {den}"
    a, b = results.get(num), results.get(den)
    if not (a is not None and b is not None and _ok(a) and _ok(b)):
        return Check(target, None, "n/a", "needs both configurations")
    value = round(a["rps"] / b["rps"], 3)
    note = f"{a['rps']:.0f} / {b['rps']:.0f} req/s"
    if a.get("cpu_ms_per_request") and b.get("cpu_ms_per_request"):
        note += (f"; CPU {a['cpu_ms_per_request']:.2f} / {b['cpu_ms_per_request']:.2f} ms/req"
                 f" (ratio {b['cpu_ms_per_request'] / a['cpu_ms_per_request']:.2f})")
    return Check(target, value, "PASS" if value >= bound else "MISS", note)


def _spread(results: dict[str, dict[str, Any]], name: str, bound: float) -> Check:
    target = f"{name}: no worker holds > {bound:.0%} of the connections"
    r = results.get(name)
    if r is None or not _ok(r) or r.get("worst_share") is None:
        return Check(target, None, "n/a", "needs the spread run")
    if not r.get("spread_samples"):
        return Check(target, None, "n/a", "no window had every connection open")
    share = float(r["worst_share"])
    windows = ", ".join(f"{w['worst_share']:.2f}" for w in r.get("runs") or [r])
    return Check(target, round(share, 3), "PASS" if share <= bound else "MISS",
                 f"worst share per window: {windows}")


def _reported(check: Check) -> Check:
    return Check(check.target.replace(">=", "vs"), check.value,
                 "REPORTED" if check.value is not None else "n/a", check.note)


# The hot path's three targets, printed first.
HOT_PATH_TARGETS = 3


def checks(results: dict[str, dict[str, Any]], rss_requests: int) -> list[Check]:
    """The hot path's targets, then the other targets, then what is only reported."""
    out = [_ratio(results, "namespaces", "bare-namespaces", 0.8),
           _ratio(results, "health", "hello", 0.9),
           _ratio(results, "health-2w", "health", 1.6)]
    hot = results.get("namespaces-hot")
    rpr = hot.get("rpcs_per_request") if hot and _ok(hot) else None
    out.append(Check("namespaces-hot RPCs/request <= 0.2", rpr,
                     "n/a" if rpr is None else ("PASS" if rpr <= 0.2 else "MISS")))
    out.append(_ratio(results, "namespaces-hot", "namespaces", 1.0))
    out.append(_spread(results, "health-2w", 0.6))
    ns = results.get("namespaces")
    if ns and _ok(ns) and ns.get("rss_max_mb") is not None:
        served = int(ns.get("requests_before_rss", 0))
        status = "PASS" if ns["rss_max_mb"] <= RSS_LIMIT_MB else "MISS"
        note = f"max over workers, after {served} requests"
        if served < rss_requests or served < RSS_REQUESTS:
            note += f" (fewer than {RSS_REQUESTS}: indicative only)"
        out.append(Check(f"namespaces RSS/worker <= {RSS_LIMIT_MB:g} MB", ns["rss_max_mb"],
                         status, note))
        out.append(Check("namespaces p99 (ms)", ns.get("p99_ms"), "REPORTED"))
    else:
        out.append(Check(f"namespaces RSS/worker <= {RSS_LIMIT_MB:g} MB", None, "n/a"))
        out.append(Check("namespaces p99 (ms)", None, "n/a"))
    out += [_reported(_ratio(results, "namespaces", "bare-namespaces", 1.0)),  # the stretch
            _reported(_ratio(results, "namespaces", "bare-rpc", 1.0)),  # the fast floor
            _reported(_ratio(results, "namespaces-cold-auth", "bare-namespaces", 1.0)),
            _reported(_ratio(results, "pods", "bare-pods", 1.0)),
            _reported(_ratio(results, "hello-2w", "hello", 1.0)),
            _spread(results, "hello-2w", 0.6)]
    out[-1] = _reported(out[-1])
    return out


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def table(results: list[dict[str, Any]]) -> str:
    """The per-configuration table as plain text."""
    head = ("config", "w x t", "req/s", "p50 ms", "p99 ms", "requests", "errors", "RPC/req",
            "CPU ms/req", "max share", "RSS/worker MB")
    rows = [head]
    for r in results:
        if "error" in r and not r.get("rps"):
            rows.append((r["name"], "", "FAILED", "", "", "", "", "", "", "", ""))
            continue
        rss = "/".join(f"{v:.0f}" for v in r.get("rss_mb") or []) or "-"
        shape = f"{r.get('workers', '?')} x {r.get('threads', '?')}"
        rows.append((r["name"], shape, _cell(r.get("rps"), "{:.0f}"),
                     _cell(r.get("p50_ms"), "{:.2f}"), _cell(r.get("p99_ms"), "{:.2f}"),
                     _cell(r.get("requests")), _cell(r.get("errors")),
                     _cell(r.get("rpcs_per_request"), "{:.3f}"),
                     _cell(r.get("cpu_ms_per_request"), "{:.2f}"),
                     _cell(r.get("worst_share"), "{:.2f}"), rss))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def checks_table(found: list[Check]) -> str:
    """The targets as plain text: the hot path's first, with how many passed."""
    width = max(len(c.target) for c in found)

    def line(c: Check) -> str:
        return f"{c.target.ljust(width)}  {_cell(c.value).rjust(8)}  {c.status:<8}  {c.note}"

    main, rest = found[:HOT_PATH_TARGETS], found[HOT_PATH_TARGETS:]
    passed = sum(c.status == "PASS" for c in main)
    lines = [f"hot-path targets: {passed} of {len(main)} PASS", *map(line, main), "",
             "other targets and reported ratios:", *map(line, rest)]
    return "\n".join(x.rstrip() for x in lines)


def failures(results: list[dict[str, Any]]) -> list[str]:
    """Why this run did not run cleanly: failed configurations and load errors."""
    out = []
    for r in results:
        if "error" in r:
            out.append(f"{r['name']}: {r['error']}")
        elif r.get("errors"):
            detail = {k: v for k, v in (r.get("error_detail") or {}).items() if v}
            out.append(f"{r['name']}: {r['errors']} request errors {detail}")
    return out


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
