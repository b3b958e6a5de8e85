"""``RABBITMQ_HOST`` as a list of broker nodes: ``host[:port]`` items, comma separated.

A RabbitMQ cluster has several nodes; the transport tries them in this order.
An IPv6 address takes brackets when it has a port (``[::1]:5671``).
"""

from __future__ import annotations


def parse_nodes(value: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """The (host, port) of every item of ``value``; raises ValueError naming a bad item."""
    nodes = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        host, port = item, default_port
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(item)
                port = _port(rest[1:], item)
        elif item.count(":") == 1:
            host, _, text = item.partition(":")
            port = _port(text, item)
        if not host or any(c.isspace() or c in "/@" for c in host):
            raise ValueError(item)
        nodes.append((host, port))
    if not nodes:
        raise ValueError(value)
    return tuple(nodes)


def node_label(host: str, port: int) -> str:
    """How a node is named in logs, metrics and ``/ready``: ``host:port``, never credentials."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(item)
    return int(text)
