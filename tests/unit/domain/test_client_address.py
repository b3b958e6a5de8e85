"""Client addresses: the guard's normalisation (property-based) and X-Forwarded-For trust."""

from __future__ import annotations

import ipaddress

from hypothesis import given, strategies as st

from cluster_service.domain.client_address import forwarded_client, guard_key, parse_address

IPV4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
IPV6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def _mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(0xFFFF_0000_0000 | int(address))


class TestGuardKey:
    @given(IPV4)
    def test_every_spelling_of_an_ipv4_client_is_one_key(self,
                                                         address: ipaddress.IPv4Address) -> None:
        mapped = _mapped(address)
        spellings = {str(address), str(mapped), mapped.exploded, f"::ffff:{address}"}
        assert {guard_key(text) for text in spellings} == {str(address)}

    @given(IPV6, st.integers(0, 2**64 - 1))
    def test_an_ipv6_client_is_its_slash_64(self, address: ipaddress.IPv6Address,
                                            host: int) -> None:
        if address.ipv4_mapped is not None:
            return
        neighbour = ipaddress.IPv6Address((int(address) >> 64 << 64) | host)
        if neighbour.ipv4_mapped is not None:
            return
        key = guard_key(str(address))
        assert key == guard_key(neighbour.exploded) == guard_key(neighbour.compressed)
        assert ipaddress.ip_network(key).prefixlen == 64 and address in ipaddress.ip_network(key)

    @given(IPV6)
    def test_the_next_slash_64_is_another_client(self, address: ipaddress.IPv6Address) -> None:
        other = ipaddress.IPv6Address((int(address) + 2**64) % 2**128)
        if address.ipv4_mapped is None and other.ipv4_mapped is None:
            assert guard_key(str(address)) != guard_key(str(other))

    @given(st.text(max_size=40))
    def test_anything_else_is_a_key_of_its_own_and_never_raises(self, text: str) -> None:
        if parse_address(text) is None:
            assert guard_key(text) == (text or "unknown")


NETS = (ipaddress.ip_network("127.0.10.0/24"), ipaddress.ip_network("::1/128"))


class TestForwardedClient:
    def test_untrusted_peer_keeps_its_own_address(self) -> None:
        assert forwarded_client("127.0.2.1", "127.0.113.9", NETS) == "127.0.2.1"

    def test_trusted_peer_gives_the_right_most_untrusted_hop(self) -> None:
        assert forwarded_client("127.0.10.1", "127.0.113.9, 127.0.2.1, 127.0.10.2",
                                NETS) == "127.0.2.1"

    def test_trusted_peer_over_ipv6_and_mapped_addresses(self) -> None:
        assert forwarded_client("::1", "::ffff:127.0.2.1", NETS) == "127.0.2.1"
        assert forwarded_client("::ffff:127.0.10.1", "127.0.2.1", NETS) == "127.0.2.1"

    def test_without_a_header_the_proxy_is_the_client(self) -> None:
        assert forwarded_client("127.0.10.1", None, NETS) == "127.0.10.1"

    @given(st.text(max_size=60))
    def test_the_answer_is_always_an_address_a_trusted_proxy_wrote(self, junk: str) -> None:
        client = forwarded_client("127.0.10.1", junk, NETS)
        assert parse_address(client) is not None
        written = {parse_address(hop) for hop in junk.split(",")}
        assert client == "127.0.10.1" or parse_address(client) in written
