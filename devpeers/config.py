"""Configuration of the development stand-in peers.

Every knob lives in one typed object, `PeerConfig`, built from defaults, then the
environment (`PeerConfig.from_env`), then command-line flags (`__main__`). Tests
build one directly and use `with_queue_prefix` so that they never share queues
with other tests on the same broker.

Nothing here talks to the broker, and no error message ever contains an API key:
a bad entry is named by its position, a key by its SHA-256 fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from .agent_ids import MAX_PODS

REPLY_STYLES = ("reply_to", "results", "alternate")
AGENTS_FORMATS = ("strings", "objects")
AGENTS_FAULTS = ("none", "silent", "error", "malformed", "duplicate")

DEFAULT_AUTH_ERROR_KEYS = frozenset({"backend-error-key"})
DEFAULT_AUTH_SILENT_KEYS = frozenset({"silent-auth-key"})

# (PeerConfig attribute, environment variable, default queue name)
QUEUE_SETTINGS: Tuple[Tuple[str, str, str], ...] = (
    ("auth_request_queue", "AUTH_REQUEST_QUEUE", "cluster_auth_requests"),
    ("auth_result_queue", "AUTH_RESULT_QUEUE", "cluster_auth_results"),
    ("namespace_request_queue", "NAMESPACE_REQUEST_QUEUE", "cluster_namespace_requests"),
    ("namespace_result_queue", "NAMESPACE_RESULT_QUEUE", "cluster_namespace_results"),
    ("agents_request_queue", "AGENTS_REQUEST_QUEUE", "cluster_agents_requests"),
    ("agents_result_queue", "AGENTS_RESULT_QUEUE", "cluster_agents_results"),
    ("operation_request_queue", "OPERATION_REQUEST_QUEUE", "cluster_operation_requests"),
    ("operation_result_queue", "OPERATION_RESULT_QUEUE", "cluster_operation_results"),
)
DEFAULT_PODS = 40


def fingerprint(api_key: str) -> str:
    """Return a short SHA-256 fingerprint, the only form in which a key may be logged."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def default_api_keys() -> Dict[str, Dict[str, Any]]:
    """Return the built-in demo keys, used when no key set is configured.

    `demo-key` is the documented one; the second user exists for ownership tests
    and the inactive one for the "is_active false must be rejected" rule.
    """
    return {
        "demo-key": _user(7, "ana", roles="admin,dev"),
        "demo-key-2": _user(8, "bob", roles="dev"),
        "inactive-key": _user(9, "eve", is_active=False),
    }


def _user(user_id: int, username: str, email: Optional[str] = None,
          roles: Optional[str] = None, is_active: bool = True) -> Dict[str, Any]:
    return {
        "id": user_id,
        "username": username,
        "email": email if email is not None else f"{username}@example.com",
        "roles": roles,
        "is_active": is_active,
    }


def parse_api_keys(text: str, source: str = "--api-keys") -> Dict[str, Dict[str, Any]]:
    """Parse `key=user_id:username[:inactive]` entries separated by commas.

    Errors name the entry's position, never its text, because the text holds a key.
    """
    keys: Dict[str, Dict[str, Any]] = {}
    for position, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key, sep, rest = entry.partition("=")
        parts = rest.split(":")
        if not sep or not key or len(parts) not in (2, 3) or not parts[1]:
            raise ValueError(f"{source}: entry {position} is not key=user_id:username")
        if len(parts) == 3 and parts[2] != "inactive":
            raise ValueError(f"{source}: entry {position}: only ':inactive' may follow the name")
        try:
            user_id = int(parts[0])
        except ValueError:
            raise ValueError(f"{source}: entry {position}: user_id is not an integer") from None
        keys[key] = _user(user_id, parts[1], is_active=len(parts) == 2)
    return keys


def load_api_keys_file(path: str) -> Dict[str, Dict[str, Any]]:
    """Load `{"key": {"id", "username", "email", "roles", "is_active"}}` from a JSON file."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--api-keys-file: cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ValueError("--api-keys-file: the file must hold a JSON object")
    keys: Dict[str, Dict[str, Any]] = {}
    for position, (key, data) in enumerate(raw.items(), start=1):
        if not isinstance(data, dict) or "id" not in data or "username" not in data:
            raise ValueError(f"--api-keys-file: entry {position} needs an object with id, username")
        try:
            user_id = int(data["id"])
        except (TypeError, ValueError):
            raise ValueError(f"--api-keys-file: entry {position}: id is not an integer") from None
        keys[str(key)] = _user(user_id, str(data["username"]), email=data.get("email"),
                               roles=data.get("roles"), is_active=bool(data.get("is_active", True)))
    return keys


def parse_assignment(text: str, option: str) -> Tuple[str, str]:
    """Split `NAME=VALUE` (used by --latency and --owner)."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"{option}: expected AGENT=VALUE, got {text!r}")
    return name, value


def parse_latencies(items: Iterable[str]) -> Dict[str, float]:
    """Parse `AGENT=SECONDS` items into a latency table."""
    table: Dict[str, float] = {}
    for item in items:
        name, value = parse_assignment(item, "--latency")
        try:
            table[name] = float(value)
        except ValueError:
            raise ValueError(f"--latency: {value!r} is not a number of seconds") from None
    return table


def parse_owners(items: Iterable[str]) -> Dict[str, int]:
    """Parse `AGENT=USER_ID` items into an ownership table."""
    table: Dict[str, int] = {}
    for item in items:
        name, value = parse_assignment(item, "--owner")
        try:
            table[name] = int(value)
        except ValueError:
            raise ValueError(f"--owner: {value!r} is not an integer user id") from None
    return table


def split_csv(text: str) -> FrozenSet[str]:
    """Return the non-empty, stripped items of a comma-separated list."""
    return frozenset(item.strip() for item in text.split(",") if item.strip())


@dataclass
class PeerConfig:
    """Everything the stand-in peers need; `reply_style` may be changed while running."""

    host: str = "localhost"
    port: int = 5672
    user: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    heartbeat: int = 30

    auth_request_queue: str = "cluster_auth_requests"
    auth_result_queue: str = "cluster_auth_results"
    namespace_request_queue: str = "cluster_namespace_requests"
    namespace_result_queue: str = "cluster_namespace_results"
    agents_request_queue: str = "cluster_agents_requests"
    agents_result_queue: str = "cluster_agents_results"
    operation_request_queue: str = "cluster_operation_requests"
    operation_result_queue: str = "cluster_operation_results"

    reply_style: str = "reply_to"

    api_keys: Dict[str, Dict[str, Any]] = field(default_factory=default_api_keys, repr=False)
    auth_error_keys: FrozenSet[str] = field(default=DEFAULT_AUTH_ERROR_KEYS, repr=False)
    auth_silent_keys: FrozenSet[str] = field(default=DEFAULT_AUTH_SILENT_KEYS, repr=False)
    auth_latency: float = 0.0

    agent_count: int = 20
    extra_agents: Tuple[str, ...] = ()
    latency: Dict[str, float] = field(default_factory=dict)
    owners: Dict[str, int] = field(default_factory=dict)
    result_as_string: bool = False
    result_as_string_agents: FrozenSet[str] = frozenset()
    agents_format: str = "strings"
    agents_fault: str = "none"
    pods: int = DEFAULT_PODS

    prefetch: int = 200
    stats_file: Optional[str] = None
    max_reconnect_delay: float = 2.0

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "PeerConfig":
        """Build a config from defaults overridden by environment variables."""
        env = os.environ if environ is None else environ
        config = cls()
        config.host = env.get("RABBITMQ_HOST", config.host)
        config.port = _int(env, "RABBITMQ_PORT", config.port)
        config.user = env.get("RABBITMQ_USER", config.user)
        config.password = env.get("RABBITMQ_PASSWORD", config.password)
        config.vhost = env.get("RABBITMQ_VHOST", config.vhost)
        for attribute, variable, _default in QUEUE_SETTINGS:
            setattr(config, attribute, env.get(variable, getattr(config, attribute)))
        config.reply_style = env.get("DEVPEERS_REPLY_STYLE", config.reply_style)
        if env.get("DEVPEERS_API_KEYS_FILE"):
            config.api_keys = load_api_keys_file(env["DEVPEERS_API_KEYS_FILE"])
        if env.get("DEVPEERS_API_KEYS"):
            config.api_keys = parse_api_keys(env["DEVPEERS_API_KEYS"], "DEVPEERS_API_KEYS")
        if "DEVPEERS_AUTH_ERROR_KEYS" in env:
            config.auth_error_keys = split_csv(env["DEVPEERS_AUTH_ERROR_KEYS"])
        config.agent_count = _int(env, "DEVPEERS_AGENTS", config.agent_count)
        config.agents_format = env.get("DEVPEERS_AGENTS_FORMAT", config.agents_format)
        config.pods = _int(env, "DEVPEERS_PODS", config.pods)
        config.prefetch = _int(env, "DEVPEERS_PREFETCH", config.prefetch)
        config.stats_file = env.get("DEVPEERS_STATS_FILE") or config.stats_file
        prefix = env.get("DEVPEERS_QUEUE_PREFIX", "")
        return config.with_queue_prefix(prefix) if prefix else config

    def with_queue_prefix(self, prefix: str) -> "PeerConfig":
        """Return a copy whose queue names all start with `prefix` (test isolation)."""
        names = {attr: prefix + getattr(self, attr) for attr, _var, _default in QUEUE_SETTINGS}
        return dataclasses.replace(self, **names)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.reply_style not in REPLY_STYLES:
            raise ValueError(f"reply style must be one of {', '.join(REPLY_STYLES)}")
        if self.agents_format not in AGENTS_FORMATS:
            raise ValueError(f"agents format must be one of {', '.join(AGENTS_FORMATS)}")
        if self.agents_fault not in AGENTS_FAULTS:
            raise ValueError(f"agents fault must be one of {', '.join(AGENTS_FAULTS)}")
        if not 0 < self.port < 65536:
            raise ValueError("RABBITMQ_PORT must be between 1 and 65535")
        if not 0 < self.pods <= MAX_PODS:
            raise ValueError(f"DEVPEERS_PODS / --pods must be between 1 and {MAX_PODS}")
        if self.agent_count < 0:
            raise ValueError("--agents must be zero or more")
        if not 0 < self.prefetch <= 65535:
            raise ValueError("--prefetch must be between 1 and 65535")
        if self.auth_latency < 0 or any(v < 0 for v in self.latency.values()):
            raise ValueError("latencies must be zero or more seconds")
        if self.max_reconnect_delay <= 0:
            raise ValueError("max_reconnect_delay must be positive")
        for attribute, variable, _default in QUEUE_SETTINGS:
            if not getattr(self, attribute):
                raise ValueError(f"{variable} must not be empty")

    def request_queues(self) -> Dict[str, str]:
        """Map each request kind to its request queue."""
        return {
            "auth": self.auth_request_queue,
            "namespaces": self.namespace_request_queue,
            "agents": self.agents_request_queue,
            "operations": self.operation_request_queue,
        }

    def result_queues(self) -> Dict[str, str]:
        """Map each request kind to its fixed results queue (legacy reply route)."""
        return {
            "auth": self.auth_result_queue,
            "namespaces": self.namespace_result_queue,
            "agents": self.agents_result_queue,
            "operations": self.operation_result_queue,
        }

    def queue_names(self) -> List[str]:
        """Return every queue name, e.g. for declaring or deleting them."""
        return [getattr(self, attribute) for attribute, _var, _default in QUEUE_SETTINGS]

    def agent_ids(self) -> List[str]:
        """Return the connected agents in a stable order: demo agents, then configured ones."""
        demo = [f"demo-agent-{n}" for n in range(1, self.agent_count + 1)]
        configured = set(self.extra_agents) | set(self.latency) | set(self.owners)
        configured |= set(self.result_as_string_agents)
        return demo + sorted(configured - set(demo))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
