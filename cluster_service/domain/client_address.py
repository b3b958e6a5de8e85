"""Which address a request comes from: trusted proxies by address, and the guard's key.

``X-Forwarded-For`` is believed only when the TCP peer is one of
``TRUSTED_PROXY_ADDRESSES`` (addresses or CIDR networks; empty = nobody).
Then the header is read right to left: every hop that is itself a trusted
proxy is skipped, and the first one that is not is the client. A hop that is
not an IP address ends the walk at the last trusted proxy, which then counts
as the client: a forged or garbled header can never name an address a
trusted proxy did not write. (A hop count instead would let anyone who can
reach gunicorn's port directly choose their own address.)

The brute-force guard counts failures per *client*, so equal clients must
get equal keys: an IPv4-mapped IPv6 address is its IPv4 address, and an IPv6
client is its /64 (one host is usually given a whole /64).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_CLIENT_PREFIX = 64


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address (IPv4-mapped IPv6 as IPv4), or None when ``text`` is not one."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def guard_key(client: str | None) -> str:
    """The failed-login guard's name for a client: its IPv4 address, or its IPv6 /64."""
    address = parse_address(client)
    if address is None:
        return client or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def forwarded_client(peer: str | None, forwarded_for: str | None,
                     trusted: tuple[IPNetwork, ...]) -> str | None:
    """The client behind ``peer``, per the module docstring; ``peer`` itself when untrusted."""
    current = parse_address(peer)
    if current is None or not _is_trusted(current, trusted):
        return peer
    for hop in reversed((forwarded_for or "").split(",")):
        address = parse_address(hop)
        if address is None:
            break
        current = address
        if not _is_trusted(address, trusted):
            break
    return str(current)


def _is_trusted(address: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
