"""What the stand-in peers answer: pure functions from a request body to replies.

This module never imports pika, so the answers can be checked without a broker
and the transport (`peers.py`) stays a thin loop. A handler returns a list of
`Reply` objects: empty means "stay silent", two means "send a duplicate".

Agent-id conventions (so a test needs no configuration to provoke a fault):

- `demo-agent-1` ... `demo-agent-N` and configured agents are connected.
- `slow-<ms>-*` is connected and answers after <ms> milliseconds.
- `string-result-*` is connected and sends `result` as a JSON string.
- `fault-silent*` never answers; `fault-error*` answers error "Agent returned an
  error: boom"; `fault-not-connected*` / `fault-forbidden*` / `fault-timeout-code*`
  answer with error_code agent_not_connected / forbidden / agent_timeout;
  `fault-result-error*` answers result {"error": true, "message": ...};
  `fault-malformed*` sends a body that is not JSON; `fault-wrong-shape-list*`
  sends a JSON list; other `fault-wrong-shape*` send a result without
  `namespaces`; `fault-result-not-json*` sends a result string that is not JSON;
  `fault-no-request-id*` omits request_id and correlation_id; `fault-huge*`
  sends a valid ~5 MB reply; `fault-duplicate*` sends a valid reply twice;
  `fault-late-<ms>-*` sends a valid reply after <ms> milliseconds.
- Any other id is not connected (error_code agent_not_connected).

Replies that cannot carry a request id (not JSON, a JSON list) can only be
matched through `correlation_id`, i.e. with the reply_to style.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from .config import PeerConfig

_DELAYED_ID = re.compile(r"^(?:slow|fault-late)-(\d{1,7})-")
HUGE_REPLY_BYTES = 5 * 1024 * 1024
KUBERNETES_VERSION = "v1.29.4"


@dataclass(frozen=True)
class Reply:
    """One message to send back; `correlate=False` drops the correlation_id too."""

    body: bytes
    delay: float = 0.0
    correlate: bool = True


def utc_timestamp() -> str:
    """Return the contract's timestamp form: ISO 8601 UTC, milliseconds, `Z`."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class Behaviour:
    """Answers auth, namespace and list-agents requests according to a `PeerConfig`.

    The agent set is computed once here; build a new Behaviour to pick up changes
    to agents, owners or latencies (the transport does so on every connection).
    """

    def __init__(self, config: PeerConfig) -> None:
        self._config = config
        self._agents = config.agent_ids()
        self._known = frozenset(self._agents)
        self._padding: Optional[str] = None
        # Checked in order; the first prefix that matches wins.
        self._faults: Tuple[Tuple[str, Callable[[str, Dict[str, Any]], List[Reply]]], ...] = (
            ("fault-silent", lambda a, r: []),
            ("fault-error", lambda a, r: self._error(a, r, "Agent returned an error: boom")),
            ("fault-not-connected", lambda a, r: self._error(
                a, r, "Agent not connected", "agent_not_connected")),
            ("fault-forbidden", lambda a, r: self._error(
                a, r, "User is not allowed to use this agent", "forbidden")),
            ("fault-timeout-code", lambda a, r: self._error(
                a, r, "Agent did not respond in time", "agent_timeout")),
            ("fault-result-error", lambda a, r: self._namespaces_reply(
                a, r, {"error": True, "message": "cannot list namespaces"})),
            ("fault-malformed", lambda a, r: [Reply(b"{this is not json")]),
            ("fault-wrong-shape-list", lambda a, r: [Reply(_dump(
                [r.get("request_id"), a, "namespaces"]))]),
            ("fault-wrong-shape", lambda a, r: self._namespaces_reply(
                a, r, {"total_count": 0, "cluster_info": {}})),
            ("fault-result-not-json", lambda a, r: self._namespaces_reply(
                a, r, "namespaces: this is not json")),
            ("fault-no-request-id", self._no_request_id),
            ("fault-huge", self._huge),
            ("fault-duplicate", lambda a, r: self._valid(a, r) * 2),
        )

    # ----- auth (User Service role) -------------------------------------------------------

    def auth(self, request: Dict[str, Any]) -> List[Reply]:
        """Validate `api_key` against the configured key set."""
        config = self._config
        request_id = request.get("request_id")
        key = request.get("api_key")
        if isinstance(key, str) and key in config.auth_silent_keys:
            return []
        if isinstance(key, str) and key in config.auth_error_keys:
            body: Dict[str, Any] = {
                "request_id": request_id,
                "error": "Authentication error: database unavailable",
            }
        elif isinstance(key, str) and key in config.api_keys:
            body = {
                "request_id": request_id,
                "valid": True,
                "user_data": dict(config.api_keys[key]),
                "message": "Authentication successful",
            }
        else:
            body = {"request_id": request_id, "valid": False, "error": "Invalid API key"}
        return [Reply(_dump(body), delay=config.auth_latency)]

    # ----- namespaces (Onboarding Service role) -------------------------------------------

    def namespaces(self, request: Dict[str, Any]) -> List[Reply]:
        """Answer a get-namespaces request as the named (simulated) agent would."""
        agent_id = request.get("agent_id")
        if not isinstance(agent_id, str) or not agent_id:
            return self._error("", request, "agent_id is required", "invalid_request")
        command = request.get("command", "get-namespaces")
        if command != "get-namespaces":
            return self._error(agent_id, request, "Unknown command", "invalid_request")
        replies = self._dispatch(agent_id, request)
        delay = self._delay_for(agent_id)
        if delay:
            replies = [Reply(r.body, delay, r.correlate) for r in replies]
        return replies

    def _dispatch(self, agent_id: str, request: Dict[str, Any]) -> List[Reply]:
        if agent_id.startswith("fault-"):
            for prefix, handler in self._faults:
                if agent_id.startswith(prefix):
                    return handler(agent_id, request)
            return self._valid(agent_id, request)  # fault-late-* and unknown fault names
        connected = (agent_id in self._known or _DELAYED_ID.match(agent_id) is not None
                     or agent_id.startswith("string-result-"))
        if not connected:
            return self._error(agent_id, request, "Agent not connected", "agent_not_connected")
        owner = self._config.owners.get(agent_id)
        if owner is not None and str(owner) != str(_user_id(request)):
            return self._error(agent_id, request, "User is not allowed to use this agent",
                               "forbidden")
        return self._valid(agent_id, request)

    def _delay_for(self, agent_id: str) -> float:
        if agent_id in self._config.latency:
            return self._config.latency[agent_id]
        match = _DELAYED_ID.match(agent_id)
        return int(match.group(1)) / 1000.0 if match else 0.0

    def _valid(self, agent_id: str, request: Dict[str, Any]) -> List[Reply]:
        result: Any = self._result(agent_id, request)
        as_string = (self._config.result_as_string or agent_id.startswith("string-result-")
                     or agent_id in self._config.result_as_string_agents)
        if as_string:
            result = json.dumps(result)
        return self._namespaces_reply(agent_id, request, result)

    def _result(self, agent_id: str, request: Dict[str, Any]) -> Dict[str, Any]:
        namespaces = simulated_namespaces(agent_id)
        return {
            "namespaces": namespaces,
            "total_count": len(namespaces),
            "cluster_info": {
                "cluster_id": request.get("cluster_id"),
                "agent_id": agent_id,
                "kubernetes_version": KUBERNETES_VERSION,
                "platform": "devpeers-simulated",
                "node_count": 3,
            },
        }

    def _namespaces_reply(self, agent_id: str, request: Dict[str, Any], result: Any,
                          error: Optional[str] = None,
                          error_code: Optional[str] = None) -> List[Reply]:
        body: Dict[str, Any] = {
            "request_id": request.get("request_id"),
            "agent_id": agent_id,
            "result": result,
            "error": error,
            "timestamp": utc_timestamp(),
        }
        if error_code is not None:
            body["error_code"] = error_code
        return [Reply(_dump(body))]

    def _error(self, agent_id: str, request: Dict[str, Any], error: str,
               error_code: Optional[str] = None) -> List[Reply]:
        return self._namespaces_reply(agent_id, request, None, error, error_code)

    def _no_request_id(self, agent_id: str, request: Dict[str, Any]) -> List[Reply]:
        body = json.loads(self._valid(agent_id, request)[0].body)
        del body["request_id"]
        return [Reply(_dump(body), correlate=False)]

    def _huge(self, agent_id: str, request: Dict[str, Any]) -> List[Reply]:
        if self._padding is None:
            self._padding = "x" * HUGE_REPLY_BYTES
        result = self._result(agent_id, request)
        result["namespaces"][-1]["annotations"]["kubesage.io/padding"] = self._padding
        return self._namespaces_reply(agent_id, request, result)

    # ----- connected agents (Onboarding Service role) -------------------------------------

    def agents(self, request: Dict[str, Any]) -> List[Reply]:
        """List the connected agents this user may see (unowned or owned by the user)."""
        config = self._config
        request_id = request.get("request_id")
        if config.agents_fault == "silent":
            return []
        if config.agents_fault == "malformed":
            return [Reply(b"[not json")]
        if config.agents_fault == "error":
            return [Reply(_dump({"request_id": request_id, "agents": None,
                                 "error": "Onboarding Service error: registry unavailable"}))]
        command = request.get("command", "list-agents")
        if command != "list-agents":
            return [Reply(_dump({"request_id": request_id, "agents": None,
                                 "error": "Unknown command"}))]
        user_id = str(_user_id(request))
        visible = [a for a in self._agents
                   if config.owners.get(a) is None or str(config.owners[a]) == user_id]
        agents: List[Any] = visible
        if config.agents_format == "objects":
            agents = [{"agent_id": a, "status": "connected"} for a in visible]
        reply = Reply(_dump({"request_id": request_id, "agents": agents, "error": None}))
        return [reply, reply] if config.agents_fault == "duplicate" else [reply]


def _user_id(request: Dict[str, Any]) -> Any:
    user = request.get("user")
    return user.get("id") if isinstance(user, dict) else None


def simulated_namespaces(agent_id: str) -> List[Dict[str, Any]]:
    """Return the namespaces of a fresh cluster plus `team-<agent_id>`, which tells agents apart."""
    system: List[Tuple[str, str, Dict[str, str]]] = [
        ("default", "2024-01-01T12:00:00Z", {}),
        ("kube-system", "2024-01-01T12:00:00Z", {}),
        ("kube-public", "2024-01-01T12:00:01Z", {}),
        ("kube-node-lease", "2024-01-01T12:00:01Z", {}),
    ]
    namespaces = [
        {
            "name": name,
            "status": "Active",
            "createdAt": created,
            "labels": {"kubernetes.io/metadata.name": name},
            "annotations": annotations,
        }
        for name, created, annotations in system
    ]
    team = f"team-{agent_id}"
    namespaces.append({
        "name": team,
        "status": "Active",
        "createdAt": "2024-03-15T09:30:00Z",
        "labels": {
            "kubernetes.io/metadata.name": team,
            "app.kubernetes.io/managed-by": "kubesage",
            "kubesage.io/agent": agent_id,
        },
        "annotations": {
            "kubesage.io/description": "Simulated by devpeers (development stand-in)",
            "scheduler.alpha.kubernetes.io/node-selector": "",
        },
    })
    return namespaces
