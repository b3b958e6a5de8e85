"""What the stand-in peers answer: pure functions from a request body to replies.

This module never imports pika, so the answers can be checked without a broker
and the transport (`peers.py`) stays a thin loop. A handler returns a list of
`Reply` objects: empty means "stay silent", two means "send a duplicate".

Agents are configured by their ids (`agent_ids` has the grammar: traits such as
`slow-<ms>`, `pods-<n>`, `churn`, `agent-strings`, `agent-null`,
`string-result`, composable, before a free name), so a test needs no
configuration to provoke a fault:

- `demo-agent-1` ... `demo-agent-N`, configured agents and ids with a trait are
  connected; `slow-<ms>-*` answers after <ms> milliseconds; `string-result-*`
  sends `result` as a JSON string.
- `fault-silent*` never answers; `fault-error*` answers error "Agent returned an
  error: boom"; `fault-not-connected*` / `fault-forbidden*` / `fault-timeout-code*`
  answer with error_code agent_not_connected / forbidden / agent_timeout;
  `fault-result-error*` answers result {"error": true, "message": ...};
  `fault-malformed*` sends a body that is not JSON; `fault-wrong-shape-list*`
  sends a JSON list; other `fault-wrong-shape*` send a result without the list;
  `fault-result-not-json*` sends a result string that is not JSON;
  `fault-text*` sends the agent's own plain-text failure as result (`Failed to
  list pods: pods is forbidden: ...`); `fault-closed*` answers the Onboarding
  Service's text for an agent that closed its socket (`Failed to communicate
  with agent: received 1000 (OK); then sent 1000 (OK)`, no error_code);
  `fault-no-request-id*` omits request_id and correlation_id; `fault-huge*`
  sends a valid ~5 MB reply; `fault-duplicate*` sends a valid reply twice;
  `fault-late-<ms>-*` sends a valid reply after <ms> milliseconds. Faults
  compose with leading traits (`slow-300-fault-text-1`).
- Any other id is not connected (error_code agent_not_connected).

Every fault applies to get-namespaces and to the cluster operations alike.
Replies that cannot carry a request id (not JSON, a JSON list) can only be
matched through `correlation_id`, i.e. with the reply_to style.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import cluster
from .agent_ids import AgentTraits, parse_agent_id
from .config import PeerConfig
from .operations import COMMANDS, NOUNS, ClusterStore, forbidden_text

HUGE_REPLY_BYTES = 5 * 1024 * 1024
KUBERNETES_VERSION = cluster.KUBERNETES_VERSION
CLOSED_TEXT = "Failed to communicate with agent: received 1000 (OK); then sent 1000 (OK)"


@dataclass(frozen=True)
class Reply:
    """One message to send back; `correlate=False` drops the correlation_id too."""

    body: bytes
    delay: float = 0.0
    correlate: bool = True


@dataclass(frozen=True)
class Ask:
    """One request being answered: who asked which agent for what, and how to answer it."""

    agent_id: str
    request: Dict[str, Any]
    command: str
    traits: AgentTraits
    valid: Callable[[], bytes]   # the serialized `result` of a correct answer


def utc_timestamp() -> str:
    """Return the contract's timestamp form: ISO 8601 UTC, milliseconds, `Z`."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


Handler = Callable[[Ask], List[Reply]]


class Behaviour:
    """Answers auth, namespace, operation and list-agents requests according to a `PeerConfig`.

    The agent set is computed once here; build a new Behaviour to pick up changes
    to agents, owners or latencies (the transport does so on every connection).
    The fake clusters (`operations.ClusterStore`) are cached here too.
    """

    def __init__(self, config: PeerConfig) -> None:
        self._config = config
        self._agents = config.agent_ids()
        self._known = frozenset(self._agents)
        self._padding: Optional[str] = None
        self.store = ClusterStore(config.pods)
        # Checked in order; the first prefix that matches wins.
        self._faults: Tuple[Tuple[str, Handler], ...] = (
            ("fault-silent", lambda a: []),
            ("fault-error", lambda a: self._error(a, "Agent returned an error: boom")),
            ("fault-not-connected", lambda a: self._error(
                a, "Agent not connected", "agent_not_connected")),
            ("fault-forbidden", lambda a: self._error(
                a, "User is not allowed to use this agent", "forbidden")),
            ("fault-timeout-code", lambda a: self._error(
                a, "Agent did not respond in time", "agent_timeout")),
            ("fault-result-error", lambda a: self._reply(a, _dump(
                {"error": True, "message": f"cannot {_action(a.command)}"}))),
            ("fault-malformed", lambda a: [Reply(b"{this is not json")]),
            ("fault-wrong-shape-list", lambda a: [Reply(_dump(
                [a.request.get("request_id"), a.agent_id, NOUNS[a.command][0]]))]),
            ("fault-wrong-shape", lambda a: self._reply(a, _dump(
                {"total_count": 0, "cluster_info": {}} if a.command == "get-namespaces"
                else {"count": 0}))),
            ("fault-result-not-json", lambda a: self._reply(a, _dump(
                f"{NOUNS[a.command][0]}: this is not json"))),
            ("fault-text", lambda a: self._reply(a, _dump(
                forbidden_text(a.command, _params(a.request))))),
            ("fault-closed", lambda a: self._error(a, CLOSED_TEXT)),
            ("fault-no-request-id", self._no_request_id),
            ("fault-huge", self._huge),
            ("fault-duplicate", lambda a: self._valid(a) * 2),
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

    # ----- namespaces and cluster operations (Onboarding Service role) --------------------

    def namespaces(self, request: Dict[str, Any]) -> List[Reply]:
        """Answer a get-namespaces request as the named (simulated) agent would."""
        command = request.get("command", "get-namespaces")
        return self._answer(request, command if isinstance(command, str) else "",
                            ("get-namespaces",))

    def operations(self, request: Dict[str, Any]) -> List[Reply]:
        """Answer a cluster operation (get-pods, ..., get-pod-logs) as the agent would."""
        command = request.get("command")
        return self._answer(request, command if isinstance(command, str) else "", COMMANDS)

    def _answer(self, request: Dict[str, Any], command: str,
                accepted: Tuple[str, ...]) -> List[Reply]:
        agent_id = request.get("agent_id")
        traits = parse_agent_id(agent_id) if isinstance(agent_id, str) else AgentTraits()
        if not isinstance(agent_id, str) or not agent_id:
            ask = Ask("", request, "get-namespaces", traits, lambda: b"null")
            return self._error(ask, "agent_id is required", "invalid_request")
        if command not in accepted:
            ask = Ask(agent_id, request, "get-namespaces", traits, lambda: b"null")
            return self._error(ask, "Unknown command", "invalid_request")
        if command == "get-namespaces":
            def valid() -> bytes:
                return _dump(self._result(agent_id, request, traits))
        else:
            def valid() -> bytes:
                return self.store.result(command, agent_id, traits, _params(request))
        replies = self._dispatch(Ask(agent_id, request, command, traits, valid))
        delay = self._delay_for(agent_id, traits)
        if delay:
            replies = [Reply(r.body, delay, r.correlate) for r in replies]
        return replies

    def _dispatch(self, ask: Ask) -> List[Reply]:
        agent_id = ask.agent_id
        if ask.traits.fault is not None:
            for prefix, handler in self._faults:
                if ask.traits.fault.startswith(prefix):
                    return handler(ask)
            return self._valid(ask)  # fault-late-* and unknown fault names
        if agent_id not in self._known and not ask.traits.has_traits:
            return self._error(ask, "Agent not connected", "agent_not_connected")
        owner = self._config.owners.get(agent_id)
        if owner is not None and str(owner) != str(_user_id(ask.request)):
            return self._error(ask, "User is not allowed to use this agent", "forbidden")
        return self._valid(ask)

    def _delay_for(self, agent_id: str, traits: AgentTraits) -> float:
        if agent_id in self._config.latency:
            return self._config.latency[agent_id]
        return traits.delay

    def _valid(self, ask: Ask) -> List[Reply]:
        result = ask.valid()
        as_string = (self._config.result_as_string or ask.traits.string_result
                     or ask.agent_id in self._config.result_as_string_agents)
        if as_string:
            result = _dump(result.decode())
        return self._reply(ask, result)

    def _result(self, agent_id: str, request: Dict[str, Any],
                traits: AgentTraits) -> Dict[str, Any]:
        namespaces: Any = simulated_namespaces(agent_id)
        extra = self.store.extra_namespaces(agent_id, traits)
        namespaces.extend(extra)
        if traits.namespace_items == "strings":
            namespaces = [item["name"] for item in namespaces]
        elif traits.namespace_items == "null":
            namespaces = None
        return {
            "namespaces": namespaces,
            "total_count": len(namespaces or ()),
            "cluster_info": {
                "cluster_id": request.get("cluster_id"),
                "agent_id": agent_id,
                "kubernetes_version": KUBERNETES_VERSION,
                "platform": "devpeers-simulated",
                "node_count": len(self.store.layout(agent_id, traits).nodes),
            },
        }

    def _reply(self, ask: Ask, result: bytes, error: Optional[str] = None,
               error_code: Optional[str] = None) -> List[Reply]:
        """The reply body, built by concatenation: `result` may be megabytes of cached JSON."""
        parts = [b'{"request_id":', _dump(ask.request.get("request_id")),
                 b',"agent_id":', _dump(ask.agent_id), b',"result":', result,
                 b',"error":', _dump(error), b',"timestamp":"', utc_timestamp().encode(), b'"']
        if error_code is not None:
            parts += [b',"error_code":', _dump(error_code)]
        parts.append(b"}")
        return [Reply(b"".join(parts))]

    def _error(self, ask: Ask, error: str, error_code: Optional[str] = None) -> List[Reply]:
        return self._reply(ask, b"null", error, error_code)

    def _no_request_id(self, ask: Ask) -> List[Reply]:
        body = json.loads(self._valid(ask)[0].body)
        del body["request_id"]
        return [Reply(_dump(body), correlate=False)]

    def _huge(self, ask: Ask) -> List[Reply]:
        if self._padding is None:
            self._padding = "x" * HUGE_REPLY_BYTES
        result = json.loads(ask.valid())
        if ask.command == "get-namespaces":
            result["namespaces"][-1]["annotations"]["kubesage.io/padding"] = self._padding
        else:
            result["kubesage_padding"] = self._padding
        return self._reply(ask, _dump(result))

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


def _params(request: Mapping[str, Any]) -> Mapping[str, Any]:
    params = request.get("params")
    return params if isinstance(params, dict) else {}


def _action(command: str) -> str:
    """What failed, in a result error's message: "list pods", "get logs", ..."""
    if command == "get-pod-logs":
        return "get logs"
    if command == "get-cluster-resources":
        return "get cluster resources"
    return "list " + NOUNS[command][0]


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
