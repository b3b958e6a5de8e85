#!/usr/bin/env bash
# Rewrite the spec of deploy/kubernetes/monitoring/prometheusrule.yaml from alerts.yaml
# (its header, down to "spec:", is kept). Run after editing alerts.yaml;
# tests/deploy/test_alert_rules.py fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/../.."
alerts=deploy/prometheus/alerts.yaml
rule=deploy/kubernetes/monitoring/prometheusrule.yaml
next="$(mktemp)"
{ sed -n '1,/^spec:$/p' "$rule"; grep -v '^#' "$alerts" | sed 's/^\(..*\)$/  \1/'; } > "$next"
mv "$next" "$rule"
