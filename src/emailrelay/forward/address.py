"""``--forward-to`` and ``ForwardToAddress`` values, in E-MailRelay's forms.

* ``host:port`` (split at the last colon; the port may be a service name such as
  ``smtp``), ``1.2.3.4:25``, ``[::1]:25``, ``::1:25`` or ``::1.25`` (the IPv6 form
  E-MailRelay writes in its logs and envelopes);
* ``/path/to/socket``: a unix-domain socket;
* ``far-host:port@socks-host:port``: through a SOCKS 4a proxy, which resolves the far
  host itself.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


class AddressError(ValueError):
    """A forwarding address that cannot be understood."""


@dataclass(frozen=True)
class ForwardAddress:
    text: str
    host: str = ""  # a name or an IP address, or the socket path
    port: int = 0
    unix: bool = False
    socks_host: str = ""
    socks_port: int = 0

    @property
    def socks(self) -> bool:
        return bool(self.socks_host)

    def display(self) -> str:
        if self.unix:
            return self.host
        far = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{far}@{self.socks_host}:{self.socks_port}" if self.socks else far


def _port(service: str, text: str) -> int:
    if service.isdigit():
        port = int(service)
        if 0 < port < 65536:
            return port
        raise AddressError(f"invalid port number in \"{text}\"")
    try:
        return socket.getservbyname(service, "tcp")
    except (OSError, UnicodeError):  # UnicodeError: bytes that are not UTF-8
        raise AddressError(f"unknown port or service name \"{service}\" in \"{text}\"") from None


def _ipv6_dot_port(part: str) -> tuple[str, str] | None:
    """``2001:db8::1.25`` -> ``("2001:db8::1", "25")``; None for anything else."""
    if part.count(":") < 2 or part.startswith("["):
        return None
    host, dot, port = part.rpartition(".")
    if not dot or not port.isdigit():
        return None
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return None
    return host, port


def _host_port(part: str, text: str, *, numeric_port: bool = False) -> tuple[str, int]:
    if (dotted := _ipv6_dot_port(part)) is not None:
        return dotted[0], _port(dotted[1], text)
    host, sep, service = part.rpartition(":")
    if not sep or not service:
        raise AddressError(f"invalid address \"{text}\": expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise AddressError(f"invalid address \"{text}\": no host name")
    if numeric_port and not service.isdigit():
        raise AddressError(f"invalid address \"{text}\": the far port must be a number")
    return host, _port(service, text)


def parse_forward_address(text: str) -> ForwardAddress:
    text = text.strip()
    if not text:
        raise AddressError("empty forwarding address")
    if text.startswith("/") and ":" not in text:
        return ForwardAddress(text, host=text, unix=True)
    far, at, proxy = text.partition("@")
    if at:
        host, port = _host_port(far, text, numeric_port=True)
        socks_host, socks_port = _host_port(proxy, text)
        return ForwardAddress(text, host, port, socks_host=socks_host, socks_port=socks_port)
    host, port = _host_port(text, text)
    return ForwardAddress(text, host, port)
