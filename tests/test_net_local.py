"""Which client addresses count as local: accepted without --remote-clients, and never
looked up in a DNSBL (:func:`emailrelay.net.local.is_local`)."""

from __future__ import annotations

import pytest

from emailrelay.net.local import is_local

LOCAL = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback, the whole of 127/8"),
    ("::1", "ipv6 loopback"),
    ("10.0.0.1", "rfc 1918 10/8"),
    ("10.255.255.255", "rfc 1918 10/8, top"),
    ("172.16.0.1", "rfc 1918 172.16/12, bottom"),
    ("172.31.255.255", "rfc 1918 172.16/12, top"),
    ("192.168.0.1", "rfc 1918 192.168/16"),
    ("192.168.255.255", "rfc 1918 192.168/16, top"),
    ("169.254.1.1", "ipv4 link local"),
    ("100.64.0.1", "rfc 6598 shared address space"),
    ("100.127.255.255", "rfc 6598 shared address space, top"),
    ("fe80::1", "ipv6 link local"),
    ("fe80::1%eth0", "ipv6 link local with a zone"),
    ("febf::1", "ipv6 link local, top of fe80::/10"),
    ("fc00::1", "unique local fc00::/7"),
    ("fd12:3456:789a::1", "unique local fd00::/8"),
    ("::ffff:192.168.1.1", "ipv4-mapped private"),
    ("::ffff:127.0.0.1", "ipv4-mapped loopback"),
    ("", "a unix-domain peer has no address"),
    (None, "a unix-domain peer has no address"),
]

NOT_LOCAL = [
    ("8.8.8.8", "public"),
    ("192.0.2.1", "documentation (TEST-NET-1) is not private"),
    ("2001:db8::1", "ipv6 documentation is not private"),
    ("2a00:1450:4001:80b::200e", "public ipv6"),
    ("::ffff:8.8.8.8", "ipv4-mapped public"),
    ("9.255.255.255", "just below 10/8"),
    ("11.0.0.0", "just above 10/8"),
    ("172.15.255.255", "just below 172.16/12"),
    ("172.32.0.0", "just above 172.16/12"),
    ("192.167.255.255", "just below 192.168/16"),
    ("192.169.0.0", "just above 192.168/16"),
    ("169.253.255.255", "just below link local"),
    ("100.63.255.255", "just below 100.64/10"),
    ("100.128.0.0", "just above 100.64/10"),
    ("fec0::1", "above fe80::/10 (the old site-local)"),
    ("fe00::1", "between fc00::/7 and fe80::/10"),
    ("fbff::1", "just below fc00::/7"),
    ("0.0.0.0", "unspecified"),
    ("::", "ipv6 unspecified"),
    ("255.255.255.255", "broadcast"),
    ("localhost", "a name, not an address"),
    ("not an address", "garbage"),
]


@pytest.mark.parametrize("host,why", LOCAL, ids=[f"{h}: {w}" for h, w in LOCAL])
def test_local_addresses_are_accepted(host: str | None, why: str) -> None:
    assert is_local(host) is True, why


@pytest.mark.parametrize("host,why", NOT_LOCAL, ids=[f"{h}: {w}" for h, w in NOT_LOCAL])
def test_other_addresses_are_refused(host: str, why: str) -> None:
    assert is_local(host) is False, why
