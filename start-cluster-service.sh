#!/usr/bin/env bash
# Start the Cluster Service under gunicorn (the seed's start script, made real).
#
#   ./start-cluster-service.sh          the service alone, configured by the environment / .env
#   ./start-cluster-service.sh --demo   also start the stand-in peers (a development stand-in
#                                       for the User and Onboarding Services, never for
#                                       production) and print curls: namespaces, pods, a
#                                       deployment, the summary and a log tail
#
# It creates .venv and installs the pinned requirements on first use. With
# USE_SSL=true and no certificate at SSL_CERTFILE/SSL_KEYFILE it generates a
# self-signed development certificate for localhost.
set -euo pipefail
cd "$(dirname "$0")"

demo=false
case "${1:-}" in
  --demo) demo=true ;;
  "") ;;
  *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/gunicorn ] || [ requirements.txt -nt .venv/.installed ]; then
  echo "Installing into .venv ..."
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi

# Values from .env count too (the environment wins), as gunicorn.conf.py reads them.
env_value() {  # NAME DEFAULT
  local value="${!1:-}"
  if [ -z "$value" ] && [ -f .env ]; then
    value=$(sed -n "s/^$1=//p" .env | tail -n 1)
  fi
  echo "${value:-$2}"
}

if [ "$(env_value USE_SSL false)" = "true" ]; then
  cert=$(env_value SSL_CERTFILE cert.pem); key=$(env_value SSL_KEYFILE key.pem)
  if [ ! -f "$cert" ] || [ ! -f "$key" ]; then
    echo "USE_SSL=true and no certificate: generating a self-signed one for localhost (development only)"
    openssl req -x509 -newkey rsa:2048 -keyout "$key" -out "$cert" -days 365 -nodes \
      -subj "/C=US/ST=Dev/L=Dev/O=KubeSage/CN=localhost" 2>/dev/null
  fi
fi

if [ "$demo" = true ]; then
  export HOST=${HOST:-127.0.0.1}
  export RATE_LIMIT_REQUESTS_PER_MINUTE=${RATE_LIMIT_REQUESTS_PER_MINUTE:-600}
  .venv/bin/python -m devpeers &
  peers=$!
  trap 'kill "$peers" 2>/dev/null; wait "$peers" 2>/dev/null || true' EXIT
  port=$(env_value PORT 8008)
  scheme=http; [ "$(env_value USE_SSL false)" = "true" ] && scheme="https" && curl_k="-k " || curl_k=""
  cat <<MSG

  Local demo: stand-in peers are answering on RabbitMQ (demo API key: demo-key).
  Try, once gunicorn says it is listening:

    api='${scheme}://127.0.0.1:${port}/api/v3.0/cluster'
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/namespaces?agent_id=demo-agent-1"
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/pods?agent_id=demo-agent-1&namespace=kube-system&limit=5"
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/pods?agent_id=demo-agent-1&fieldSelector=status.phase!=Running"
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/deployments?agent_id=demo-agent-1&fieldSelector=metadata.name=coredns"
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/summary?agent_id=demo-agent-1"
    curl ${curl_k}-H 'X-API-Key: demo-key' -H 'Accept: text/plain' "\$api/pods/kube-apiserver-cp-1/logs?agent_id=demo-agent-1&namespace=kube-system&tail_lines=10"
    curl ${curl_k}-H 'X-API-Key: demo-key' "\$api/agents/connected"
    curl ${curl_k}"\$api/health"

  Ctrl-C stops both.

MSG
  .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app
else
  exec .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app
fi
