"""The agent-id grammar: how a test or a benchmark configures a simulated agent by its name.

An agent id is read as `-`-separated tokens from the left. Leading *trait*
tokens, in any order, configure the agent; the first token that is not a trait
ends them, and the rest is a free name that only tells agents apart::

    agent-id := trait* (fault | name)
    trait    := "slow-<ms>"        answer after <ms> milliseconds (0-9999999)
              | "pods-<n>"         a cluster of <n> pods (1-200000; default DEVPEERS_PODS)
              | "churn"            the pod and namespace lists change on every request
              | "agent-strings"    get-namespaces items are plain strings (newest agent)
              | "agent-null"       every list is null, "namespaces": null included
              | "string-result"    `result` is sent as a JSON string
    fault    := "fault-<kind>..."  every token from here on names the fault (see behaviour)

So `slow-300-pods-5000-bench-1` is a connected agent answering after 0.3 s with
a 5,000-pod cluster, `pods-5000-slow-300-bench-1` the same agent shape, and
`slow-300-fault-text-1` a 0.3 s agent whose every answer is the agent's plain
text failure. An id with at least one trait (or a fault) is connected; any other
id is connected only if configured (`demo-agent-<n>`, `--agent`, ...). Nothing
here touches the broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

MAX_PODS = 200_000
_MS = re.compile(r"^\d{1,7}$")
_COUNT = re.compile(r"^[1-9]\d{0,5}$")
_FAULT_LATE = re.compile(r"^fault-late-(\d{1,7})-")


@dataclass(frozen=True)
class AgentTraits:
    """What an agent id asks for; `None` means "not set in the id" (the config decides)."""

    delay_ms: Optional[int] = None
    pods: Optional[int] = None
    churn: bool = False
    namespace_items: str = "objects"     # objects | strings | null
    null_lists: bool = False
    string_result: bool = False
    fault: Optional[str] = None          # the fault part of the id, starting "fault-"
    has_traits: bool = False

    @property
    def delay(self) -> float:
        """Seconds to wait before answering (the trait, or a `fault-late-<ms>-` fault)."""
        if self.delay_ms is not None:
            return self.delay_ms / 1000.0
        match = _FAULT_LATE.match(self.fault or "")
        return int(match.group(1)) / 1000.0 if match else 0.0


def parse_agent_id(agent_id: str) -> AgentTraits:
    """Read the leading trait tokens of `agent_id` (see the module docstring)."""
    parts = agent_id.split("-")
    fields: dict[str, object] = {}
    i = 0
    while i < len(parts):
        token = parts[i]
        following = parts[i + 1] if i + 1 < len(parts) else ""
        if token == "slow" and _MS.match(following):
            fields["delay_ms"] = int(following)
            i += 2
        elif token == "pods" and _COUNT.match(following) and int(following) <= MAX_PODS:
            fields["pods"] = int(following)
            i += 2
        elif token == "churn":
            fields["churn"] = True
            i += 1
        elif token == "agent" and following == "strings":
            fields["namespace_items"] = "strings"
            i += 2
        elif token == "agent" and following == "null":
            fields["namespace_items"] = "null"
            fields["null_lists"] = True
            i += 2
        elif token == "string" and following == "result":
            fields["string_result"] = True
            i += 2
        elif token == "fault":
            fields["fault"] = "-".join(parts[i:])
            break
        else:
            break
    return AgentTraits(has_traits=bool(fields), **fields)  # type: ignore[arg-type]
