#!/usr/bin/env bash
# Prometheus on this machine, scraping the demo (./start-cluster-service.sh --demo, or any
# service on 127.0.0.1:8008) with the shipped config and alert rules:
#   deploy/prometheus/run-local.sh
# then open http://127.0.0.1:9090 (Status > Targets, Alerts, Graph). Ctrl-C stops it.
# PROMETHEUS_LISTEN (default 127.0.0.1:9090) and PROMETHEUS_DATA (default: a new
# temporary directory) change where it listens and where it keeps its data.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v prometheus >/dev/null; then
  echo "prometheus is not installed (Debian/Ubuntu: apt-get install prometheus)" >&2
  exit 1
fi
listen="${PROMETHEUS_LISTEN:-127.0.0.1:9090}"
data="${PROMETHEUS_DATA:-$(mktemp -d -t cluster-service-prometheus.XXXXXX)}"
echo "Prometheus on http://$listen scraping 127.0.0.1:8008; data in $data" >&2
exec prometheus --config.file="$here/prometheus.yml" --storage.tsdb.path="$data" \
  --web.listen-address="$listen"
