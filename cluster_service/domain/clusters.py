"""Cluster operations: send an operation to the agent's Onboarding Service, map its reply.

Every operation (``operations.py``) goes through :meth:`ClusterOperations.run`:
single flight, the agent's breaker and slots, one deadline, the RPC, then the
error mapping here and the row's result parser. Replies are checked against
contract §2; anything that does not fit is the peer's fault and becomes a
RemoteError (502); the peer's own error text is logged (truncated), never
returned to the client.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Mapping

from ..concurrency.admission import KeyedSlots
from ..concurrency.large_replies import LargeReplies
from ..concurrency.breaker import Breakers, Outcome
from ..concurrency.singleflight import Shared, SingleFlight
from ..config import Settings
from ..errors import (PEER_ERRORS, AgentNotConnected, AgentTimeout, ClusterServiceError,
                      RemoteError, RpcTimeout)
from ..observability.observer import Observer
from ..rpc.bodies import loads_strict, parse_reply
from ..rpc.client import RpcClient
from .agent_results import Item
from .operations import NAMESPACES, Operation, request_body
from .users import User

log = logging.getLogger(__name__)


class ClusterOperations:
    """The agent's operations and the connected-agents list, over the RPC client."""

    def __init__(self, settings: Settings, rpc: RpcClient,
                 observer: Observer | None = None) -> None:
        self._settings = settings
        self._rpc = rpc
        self._observer = observer or Observer()
        self._per_agent: KeyedSlots[str] = KeyedSlots(settings.max_inflight_per_agent,
                                                      self._observer, scope="agent")
        self._breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown,
                                  self._observer, on_open=self._per_agent.wake_all,
                                  forget_after=3 * settings.websocket_timeout
                                  + settings.breaker_cooldown)
        rpc.add_connection_listener(lambda up: self._breakers.reset() if up else None)
        self._large = LargeReplies(self._observer)
        self._flights: SingleFlight[Shared[Any]] = SingleFlight()
        # Followers wait as long as the leader may; else a follower could get 504
        # while the leader still gets its answer.
        self._flight_timeout = settings.cluster_flight_timeout

    @property
    def breakers(self) -> Breakers:
        """The per-agent circuit breakers of this worker."""
        return self._breakers

    def run(self, op: Operation, user: User, agent_id: str, cluster_id: int | None,
            params: Mapping[str, Any] | None = None) -> Any:
        """``op``'s parsed result for the agent's cluster (``agent_results``).

        Identical concurrent requests (same user, agent, cluster, command and
        parameters) share one RPC and one parse; the result is shared, never mutated.
        """
        return self.run_shared(op, user, agent_id, cluster_id, params).value

    def run_shared(self, op: Operation, user: User, agent_id: str, cluster_id: int | None,
                   params: Mapping[str, Any] | None = None) -> Shared[Any]:
        """:meth:`run`'s result as the flight shares it, with what its requests derive
        from it (their response bodies), derived once."""
        params = params or {}
        key = (user.id, agent_id, cluster_id, op.command, tuple(sorted(params.items())))
        shared, _follower = self._flights.do(
            key, lambda: Shared(self._fetch(op, user, agent_id, cluster_id, params)),
            self._flight_timeout)
        return shared

    def list_namespaces(self, user: User, agent_id: str, cluster_id: int | None) -> list[Item]:
        """Namespaces of the agent's cluster."""
        return self.run(NAMESPACES, user, agent_id, cluster_id)  # type: ignore[no-any-return]

    def _fetch(self, op: Operation, user: User, agent_id: str, cluster_id: int | None,
               params: Mapping[str, Any]) -> Any:
        started = time.monotonic()
        outcome = "error"
        try:
            result = self._call_agent(op, user, agent_id, cluster_id, params)
            outcome = "ok"
            return result
        except ClusterServiceError as error:
            outcome = error.error_code
            raise
        finally:
            self._observer.operation_finished(op.name, outcome, time.monotonic() - started)

    def _call_agent(self, op: Operation, user: User, agent_id: str, cluster_id: int | None,
                    params: Mapping[str, Any]) -> Any:
        payload = request_body(op, agent_id, cluster_id, params,
                               {"id": user.id, "username": user.username})
        if op.own_queue:
            queue, max_bytes = (self._settings.namespace_request_queue,
                                self._settings.max_reply_bytes)
        else:
            queue, max_bytes = (self._settings.operation_request_queue,
                                self._settings.max_operation_reply_bytes)
        timeout = self._settings.websocket_timeout
        deadline = time.monotonic() + timeout  # slot waits and the agent's answer, together
        trial = self._breakers.before_call(agent_id)
        # Waiting in line for a hung agent is pointless once its breaker opens; the
        # trial call itself waits for the calls it found in flight.
        give_up = None if trial else (lambda: self._breakers.refusal(agent_id))
        recorded = False
        size_key = (agent_id, op.command, tuple(sorted(params.items())))
        try:
            with self._per_agent.held(agent_id, deadline, give_up), \
                    self._large.call(size_key, deadline):
                outcome = Outcome.NEUTRAL
                try:
                    body = self._rpc.call_bytes(queue, payload, timeout, deadline, max_bytes)
                    outcome = Outcome.ANSWERED
                    with self._large.parsing(size_key, len(body), deadline):
                        return op.parse(_result_of(parse_reply(body), agent_id))
                except (RpcTimeout, AgentTimeout):
                    outcome = Outcome.TIMED_OUT
                    raise
                finally:
                    # Before the slot is released: the next call in line must find
                    # the breaker already open.
                    self._breakers.record(agent_id, outcome, trial)
                    recorded = True
        finally:
            if not recorded:  # no slot before the deadline: no verdict on the agent
                self._breakers.record(agent_id, Outcome.NEUTRAL, trial)

    def connected_agents(self, user: User) -> list[str]:
        """Ids of the agents connected now, sorted, without duplicates."""
        reply = self._rpc.call(self._settings.agents_request_queue,
                               {"command": "list-agents",
                                "user": {"id": user.id, "username": user.username}},
                               self._settings.websocket_timeout)
        _raise_for_error(reply, reply, "")
        agents = reply.get("agents")
        if not isinstance(agents, list):
            raise RemoteError("reply has no agents list")
        ids = set()
        for item in agents:
            agent_id = item.get("agent_id") if isinstance(item, dict) else item
            if not isinstance(agent_id, str) or not agent_id:
                raise RemoteError("agents list holds an invalid entry")
            ids.add(agent_id)
        self._observer.agents_connected(len(ids))
        return sorted(ids)


# The existing Onboarding Service sends no error_code. These are its two texts for an
# agent that is not there (contract §2, docs/messaging.md "Legacy reply shapes"),
# matched whole: the first for the agent that was asked about, the second (the agent
# closed its socket after its previous answer) names no agent. Anything else is a 502.
_AGENT = r"(?P<agent>[A-Za-z0-9._:-]{1,128})"
LEGACY_NOT_CONNECTED = (
    re.compile(rf"Failed to communicate with agent: No WebSocket connection found for agent "
               rf"{_AGENT}"),
    re.compile(r"Failed to communicate with agent: received 1000 \(OK\); "
               r"then sent 1000 \(OK\)"),
)


def is_legacy_not_connected(text: Any, agent_id: str) -> bool:
    """Whether ``text`` is one of the legacy "agent not connected" texts for ``agent_id``."""
    if not isinstance(text, str):
        return False
    for pattern in LEGACY_NOT_CONNECTED:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        named = match.groupdict().get("agent")
        if named is None or not agent_id or named == agent_id:
            return True
    return False


# A peer's wire ``error_code`` -> the error it names (each class carries its code).
_ERRORS_BY_CODE = {kind.error_code: kind for kind in PEER_ERRORS}


def _raise_for_error(data: dict[str, Any], reply: dict[str, Any], agent_id: str) -> None:
    """Raise the mapped error if ``data`` says the operation failed."""
    error = data.get("error")
    failed = error is True or (isinstance(error, str) and error.strip() != "") or \
        (error not in (None, False, "") and not isinstance(error, str))
    if not failed:
        return
    code = data.get("error_code") or reply.get("error_code")
    if not isinstance(code, str):  # a list or object here must not become a 500
        code = None
    detail = data.get("message") if error is True else error
    log.warning("peer reported an error", extra={
        "event": "peer_error", "agent_id": agent_id, "error_code": str(code)[:64],
        "peer_message": str(detail)[:200]})
    kind = _ERRORS_BY_CODE.get(code) if code else None
    if kind is AgentNotConnected or (code is None and is_legacy_not_connected(detail, agent_id)):
        raise AgentNotConnected(agent_id)
    if kind is not None:
        raise kind()
    raise RemoteError("the agent reported an error")


def _result_of(reply: dict[str, Any], agent_id: str) -> dict[str, Any]:
    """The ``result`` object of a successful reply, or the mapped error."""
    _raise_for_error(reply, reply, agent_id)
    result = reply.get("result")
    if isinstance(result, str):
        try:
            result = loads_strict(result)
        except ValueError:
            # The agent's own failures are plain text ("Not running in-cluster",
            # "Failed to list pods: ..."): logged, never shown to the client.
            log.warning("agent reported a failure", extra={
                "event": "peer_error", "agent_id": agent_id, "error_code": "None",
                "peer_message": result[:200]})
            raise RemoteError("the agent reported an error") from None
    if not isinstance(result, dict):
        raise RemoteError("reply has no result object")
    _raise_for_error(result, reply, agent_id)
    return result
