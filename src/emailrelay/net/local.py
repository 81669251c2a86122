"""Which client addresses count as local (accepted without ``--remote-clients``)."""

from __future__ import annotations

import ipaddress

_LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "169.254.0.0/16",  # link local
    "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
    "::1/128",
    "fe80::/10",  # link local
    "fc00::/7",  # unique local
))


def is_local(host: str | None) -> bool:
    """True for loopback, private and link-local addresses, and unix-domain peers."""
    if not host:
        return True  # a unix-domain socket
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _LOCAL_NETWORKS)
