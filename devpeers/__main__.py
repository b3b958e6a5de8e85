"""Command line of the development stand-in peers: `python -m devpeers`.

Settings come from defaults, then the environment, then flags. SIGINT/SIGTERM
stop the peers cleanly and print a one-line JSON summary of the counters on
stdout; everything else (banner, logs) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import List, Optional, Sequence

from .config import (
    AGENTS_FAULTS,
    AGENTS_FORMATS,
    REPLY_STYLES,
    PeerConfig,
    default_api_keys,
    fingerprint,
    load_api_keys_file,
    parse_api_keys,
    parse_latencies,
    parse_owners,
    split_csv,
)
from .peers import DevPeers

DESCRIPTION = """\
DEVELOPMENT STAND-IN for the KubeSage User Service and Onboarding Service.
NEVER RUN IT IN PRODUCTION: it accepts well-known demo API keys and invents
Kubernetes clusters. It answers the Cluster Service's AMQP requests (auth,
get-namespaces, list-agents, and the cluster operations get-pods,
get-deployments, get-services, get-nodes, get-cluster-resources, get-pod-logs)
for local demos, tests and benchmarks.
"""

EPILOG = """\
environment:
  RABBITMQ_HOST (localhost) RABBITMQ_PORT (5672) RABBITMQ_USER (guest)
  RABBITMQ_PASSWORD (guest) RABBITMQ_VHOST (/)
  AUTH_REQUEST_QUEUE AUTH_RESULT_QUEUE NAMESPACE_REQUEST_QUEUE
  NAMESPACE_RESULT_QUEUE AGENTS_REQUEST_QUEUE AGENTS_RESULT_QUEUE
  OPERATION_REQUEST_QUEUE OPERATION_RESULT_QUEUE
  DEVPEERS_QUEUE_PREFIX DEVPEERS_REPLY_STYLE DEVPEERS_API_KEYS
  DEVPEERS_API_KEYS_FILE DEVPEERS_AUTH_ERROR_KEYS DEVPEERS_AGENTS
  DEVPEERS_AGENTS_FORMAT DEVPEERS_PODS DEVPEERS_PREFETCH DEVPEERS_STATS_FILE

API keys: "backend-error-key" answers a backend error, "silent-auth-key" never
answers. Default keys (when none are given): demo-key -> user 7 ana,
demo-key-2 -> user 8 bob, inactive-key -> user 9 eve (is_active false).

agent ids: demo-agent-1..N (and --agent ids) are connected; any other id is
connected only when it starts with traits, read as "-"-separated tokens from the
left, in any order, until the first token that is not one (the rest is a name):
  slow-<ms>        answer after <ms> milliseconds
  pods-<n>         a cluster of <n> pods, 1..200000 (default --pods, 40)
  churn            the pod and namespace lists change on every request
  agent-strings    get-namespaces items are plain strings (the newest agent)
  agent-null       every list is null ("namespaces": null, "pods": null, ...)
  string-result    result is sent as a JSON string
  fault-<kind>...  a fault (ends the traits): fault-silent, fault-error,
                   fault-not-connected, fault-forbidden, fault-timeout-code,
                   fault-result-error, fault-malformed, fault-wrong-shape,
                   fault-wrong-shape-list, fault-result-not-json, fault-text
                   (the agent's plain-text failure, e.g. "Failed to list pods:
                   pods is forbidden: ..."), fault-closed ("Failed to communicate
                   with agent: received 1000 (OK); then sent 1000 (OK)", no
                   error_code), fault-no-request-id, fault-huge, fault-duplicate,
                   fault-late-<ms>
e.g. slow-300-pods-5000-bench-1 answers after 0.3 s with a 5,000-pod cluster;
slow-300-fault-text-1 answers after 0.3 s with a plain-text failure.

fake clusters: deterministic per agent id and size; nodes (one per ~100 pods),
kube-system, team-<agent id>, default, and application namespaces of ~250 pods;
"age" as Go's time.Time (RFC 3339, offsets like +05:30, up to 9 fraction
digits); a namespace with no items answers null. get-pod-logs: tail_lines lines
(default 100, at most 10000) of an existing pod's container (default: the first);
an unknown pod answers the agent's text 'Failed to get logs: pods "x" not found'.
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser; flags left unset keep the environment's value."""
    parser = argparse.ArgumentParser(
        prog="python -m devpeers", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    broker = parser.add_argument_group("broker")
    broker.add_argument("--host", help="RabbitMQ host (RABBITMQ_HOST)")
    broker.add_argument("--port", type=int, help="RabbitMQ port (RABBITMQ_PORT)")
    broker.add_argument("--user", help="RabbitMQ user (RABBITMQ_USER)")
    broker.add_argument("--vhost", help="RabbitMQ virtual host (RABBITMQ_VHOST)")
    broker.add_argument("--queue-prefix", default="",
                        help="prefix every queue name (isolates parallel runs)")
    broker.add_argument("--prefetch", type=int, help="basic_qos prefetch count (200)")
    broker.add_argument("--reply-style", choices=REPLY_STYLES,
                        help="reply_to (default), results (legacy fixed queue) or alternate")

    auth = parser.add_argument_group("auth (User Service role)")
    auth.add_argument("--api-keys", metavar="KEY=ID:NAME[:inactive],...",
                      help="comma-separated API keys (DEVPEERS_API_KEYS)")
    auth.add_argument("--api-keys-file", metavar="PATH",
                      help='JSON {"key": {"id", "username", "email", "roles", "is_active"}}')
    auth.add_argument("--auth-error-keys", metavar="KEY,...",
                      help="keys answered with a backend error (default: backend-error-key)")
    auth.add_argument("--auth-silent-keys", metavar="KEY,...",
                      help="keys never answered (default: silent-auth-key)")
    auth.add_argument("--auth-latency", type=float, metavar="SECONDS",
                      help="delay every auth reply")

    onboarding = parser.add_argument_group("onboarding (Onboarding Service role)")
    onboarding.add_argument("--agents", type=int, metavar="N",
                            help="simulate demo-agent-1..demo-agent-N (20)")
    onboarding.add_argument("--agent", action="append", default=[], metavar="AGENT",
                            help="one more connected agent id (repeatable)")
    onboarding.add_argument("--latency", action="append", default=[], metavar="AGENT=SECONDS",
                            help="answer for AGENT after SECONDS (repeatable)")
    onboarding.add_argument("--owner", action="append", default=[], metavar="AGENT=USER_ID",
                            help="only USER_ID may use AGENT; others get forbidden (repeatable)")
    onboarding.add_argument("--result-as-string", action="store_true", default=None,
                            help="send every namespaces result as a JSON string")
    onboarding.add_argument("--result-as-string-agent", action="append", default=[],
                            metavar="AGENT", help="send AGENT's result as a JSON string")
    onboarding.add_argument("--agents-format", choices=AGENTS_FORMATS,
                            help="list-agents answers ids (strings) or objects")
    onboarding.add_argument("--agents-fault", choices=AGENTS_FAULTS,
                            help="make list-agents fail in this way")
    onboarding.add_argument("--pods", type=int, metavar="N",
                            help="pods of an agent's cluster without a pods-<n> trait "
                                 "(DEVPEERS_PODS, 40)")

    misc = parser.add_argument_group("misc")
    misc.add_argument("--stats-file", metavar="PATH",
                      help="rewrite counters as JSON here at most once a second")
    misc.add_argument("--log-level", default="WARNING",
                      choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def config_from_args(args: argparse.Namespace) -> PeerConfig:
    """Apply flags over `PeerConfig.from_env()`; raise ValueError on a bad value."""
    config = PeerConfig.from_env()
    for flag, attribute in (("host", "host"), ("port", "port"), ("user", "user"),
                            ("vhost", "vhost"), ("prefetch", "prefetch"),
                            ("reply_style", "reply_style"), ("auth_latency", "auth_latency"),
                            ("agents", "agent_count"), ("agents_format", "agents_format"),
                            ("agents_fault", "agents_fault"), ("stats_file", "stats_file"),
                            ("pods", "pods"),
                            ("result_as_string", "result_as_string")):
        value = getattr(args, flag)
        if value is not None:
            setattr(config, attribute, value)
    if args.api_keys_file:
        config.api_keys = load_api_keys_file(args.api_keys_file)
    if args.api_keys:
        config.api_keys = parse_api_keys(args.api_keys)
    if args.auth_error_keys is not None:
        config.auth_error_keys = split_csv(args.auth_error_keys)
    if args.auth_silent_keys is not None:
        config.auth_silent_keys = split_csv(args.auth_silent_keys)
    config.extra_agents = tuple(args.agent)
    config.latency = parse_latencies(args.latency)
    config.owners = parse_owners(args.owner)
    config.result_as_string_agents = frozenset(args.result_as_string_agent)
    if args.queue_prefix:
        config = config.with_queue_prefix(args.queue_prefix)
    config.validate()
    return config


def banner(config: PeerConfig, default_keys: bool) -> List[str]:
    """Return the start-up banner; demo keys appear in clear, configured ones as fingerprints."""
    lines = [
        "devpeers: DEVELOPMENT STAND-IN for the User and Onboarding Services - NOT FOR PRODUCTION",
        f"devpeers: broker {config.host}:{config.port} vhost {config.vhost!r}, "
        f"reply style {config.reply_style}",
        f"devpeers: requests on {', '.join(config.request_queues().values())}",
    ]
    for key, user in config.api_keys.items():
        shown = key if default_keys else f"sha256:{fingerprint(key)}"
        state = "" if user["is_active"] else " (inactive)"
        lines.append(f"devpeers: {'demo ' if default_keys else ''}API key {shown} -> "
                     f"user {user['id']} {user['username']}{state}")
    agents = config.agent_ids()
    shown_agents = ", ".join(agents[:3]) + (f", ... ({len(agents)} agents)" if len(agents) > 3
                                            else "")
    lines.append(f"devpeers: connected agents: {shown_agents or 'none'}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the peers until SIGINT/SIGTERM; print the counters as one JSON line on stdout."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.log_level != "DEBUG":
        # pika logs every connection step at INFO; keep the stand-in's own INFO readable.
        logging.getLogger("pika").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"devpeers: error: {exc}", file=sys.stderr)
        return 2
    for line in banner(config, default_keys=config.api_keys == default_api_keys()):
        print(line, file=sys.stderr)

    # Block the stop signals before the peer thread starts (threads inherit the mask),
    # then collect them synchronously here: no handler ever runs inside pika's loop.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    peers = DevPeers(config).start(wait=False)
    while peers.is_running:
        if signal.sigtimedwait(stop_signals, 1.0) is not None:
            break
    peers.stop()
    print(json.dumps(peers.counters, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
