"""Listening sockets from ``--interface``, ``--port`` and friends.

``--interface`` items are comma-separated and repeatable; each may be prefixed with
``smtp=``, ``pop=`` or ``admin=`` to apply to one kind of server only.  An item is an
IP address, an interface name (all its addresses, or only IPv4/IPv6 with a ``-ipv4``
or ``-ipv6`` suffix), ``fd#N`` (a socket inherited from the parent, as systemd socket
activation passes), or an absolute path (a unix-domain socket).  Without any item a
server listens on 0.0.0.0 and :: (IPv4 and IPv6 wildcard addresses).

Sockets are created here, before the process daemonises or drops privileges.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

import psutil

KINDS = ("smtp", "pop", "admin")


class ListenError(Exception):
    """A listening address that cannot be used (exit code 2 if it cannot be bound)."""

    def __init__(self, message: str, *, bind_failure: bool = False) -> None:
        super().__init__(message)
        self.bind_failure = bind_failure


@dataclass(frozen=True)
class ListenSpec:
    kind: str  # smtp, pop or admin
    host: str | None = None  # an IP address
    port: int = 0
    fd: int | None = None
    path: str | None = None

    def display(self) -> str:
        if self.path:
            return self.path
        if self.fd is not None:
            return f"fd#{self.fd}"
        return display_address(self.host or "", self.port)


def display_address(host: str, port: int | str) -> str:
    """An address in log lines as E-MailRelay shows it: ``192.0.2.1:25``, ``2001:db8::1.25``."""
    return f"{host}.{port}" if ":" in host else f"{host}:{port}"


def display_peer(host: str, port: int | str) -> str:
    """A connection's remote end in log lines: its address, or ``unix-domain peer``."""
    return display_address(host, port) if host else "unix-domain peer"


def address_pair(address: object) -> tuple[str, str]:
    """A socket's ``peername``/``sockname`` as (host, port) strings; ("", "") for a
    unix-domain socket."""
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), str(address[1])
    return "", ""


def parse_interfaces(values: list[str]) -> dict[str, list[str]]:
    """Split ``--interface`` values into items per server kind ('' = all kinds)."""
    items: dict[str, list[str]] = {kind: [] for kind in ("", *KINDS)}
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            kind, eq, rest = item.partition("=")
            if eq and kind in KINDS:
                items[kind].append(rest)
            elif eq and kind == "client":
                raise ListenError("using --interface with client= is no longer supported: "
                                  "use --client-interface instead")
            elif eq:
                raise ListenError(f"invalid --interface prefix \"{kind}=\": use smtp=, pop= "
                                  "or admin=")
            else:
                items[""].append(item)
    return items


def specs_for(kind: str, interface_values: list[str], port: int) -> list[ListenSpec]:
    items = parse_interfaces(interface_values)
    chosen = items[kind] + items[""]
    if not chosen:
        return [ListenSpec(kind, "0.0.0.0", port), ListenSpec(kind, "::", port)]
    specs: list[ListenSpec] = []
    for item in chosen:
        specs.extend(_expand(kind, item, port))
    return specs


def _expand(kind: str, item: str, port: int) -> list[ListenSpec]:
    if item.startswith("fd#"):
        try:
            return [ListenSpec(kind, fd=int(item[3:]))]
        except ValueError:
            raise ListenError(f"invalid file descriptor in --interface: \"{item}\"") from None
    if item.startswith("/"):
        return [ListenSpec(kind, path=item)]
    host = item[1:-1] if item.startswith("[") and item.endswith("]") else item
    try:
        ipaddress.ip_address(host.split("%")[0])
        return [ListenSpec(kind, host, port)]
    except ValueError:
        pass
    return [ListenSpec(kind, address, port) for address in interface_addresses(item)]


def interface_addresses(name: str) -> list[str]:
    family = None
    base = name
    if name.endswith("-ipv4"):
        base, family = name[:-5], socket.AF_INET
    elif name.endswith("-ipv6"):
        base, family = name[:-5], socket.AF_INET6
    interfaces = psutil.net_if_addrs()
    if base not in interfaces:
        raise ListenError(f"invalid --interface: \"{name}\" is neither an address nor a "
                          "network interface name")
    found = []
    for entry in interfaces[base]:
        if entry.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if family is not None and entry.family != family:
            continue
        address = entry.address
        if entry.family == socket.AF_INET6 and address.startswith("fe80") and "%" not in address:
            address += f"%{base}"
        found.append(address)
    if not found:
        raise ListenError(f"no addresses bound to named network interface \"{name}\"")
    return found


def open_socket(spec: ListenSpec) -> socket.socket:
    """Create, bind and listen; a bind failure raises ListenError(bind_failure=True)."""
    if spec.fd is not None:
        try:
            sock = socket.socket(fileno=spec.fd)
        except OSError as e:
            raise ListenError(f"cannot use inherited file descriptor {spec.fd}: "
                              f"{e.strerror}") from None
        sock.setblocking(False)
        return sock
    if spec.path is not None:
        return _open_unix(spec.path)
    assert spec.host is not None
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_NUMERICHOST | socket.AI_PASSIVE)
        sockaddr = infos[0][4]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise ListenError(f"cannot bind {spec.display()}: {e.strerror}",
                          bind_failure=True) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(256)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot bind {spec.display()}: {e.strerror}",
                          bind_failure=True) from None
    sock.setblocking(False)
    return sock


def _open_unix(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(256)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot bind {path}: {e.strerror}", bind_failure=True) from None
    sock.setblocking(False)
    return sock


def ipv6_available() -> bool:
    return socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")


def open_all(specs: list[ListenSpec]) -> list[tuple[ListenSpec, socket.socket]]:
    """Open every socket; the IPv6 wildcard is skipped quietly where IPv6 is absent."""
    opened: list[tuple[ListenSpec, socket.socket]] = []
    try:
        for spec in specs:
            if spec.host == "::" and not ipv6_available():
                continue
            opened.append((spec, open_socket(spec)))
    except ListenError:
        for _, sock in opened:
            sock.close()
        raise
    return opened
