"""Close one service worker's broker connection, and only that one, with ``rabbitmqctl``.

``rabbitmqctl close_all_connections`` would also cut every other test's
connections on the shared broker, so the connection is picked by its
``connection_name`` ("cluster_service <host> pid <pid>", set by the transport).
"""

from __future__ import annotations

import re
import subprocess  # nosec B404 - runs the broker's own admin tool with a fixed argv

_NAME = re.compile(r'"connection_name","cluster_service \S+ pid (\d+)"')


def _rabbitmqctl(*args: str, timeout: float = 30) -> str:
    result = subprocess.run(["rabbitmqctl", "-q", *args],  # nosec B603 B607
                            capture_output=True, text=True, timeout=timeout, check=True)
    return result.stdout


def service_connections() -> dict[int, str]:
    """Map worker pid → broker connection pid for every cluster_service connection."""
    found: dict[int, str] = {}
    for line in _rabbitmqctl("list_connections", "--no-table-headers", "pid",
                             "client_properties").splitlines():
        connection_pid, _, properties = line.partition("\t")
        match = _NAME.search(properties)
        if match:
            found[int(match.group(1))] = connection_pid.strip()
    return found


def close_connection(connection_pid: str, reason: str = "closed by a test") -> None:
    """Ask the broker to close one connection (the client sees CONNECTION_FORCED)."""
    _rabbitmqctl("close_connection", connection_pid, reason)
