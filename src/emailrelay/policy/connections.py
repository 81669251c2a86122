"""The open connections of the process, and how many of them are allowed.

:class:`ConnectionRegistry` knows every listening socket and every connection in and
out, as E-MailRelay's network monitor does for the admin ``status`` command, and
enforces our limits on concurrent SMTP (and POP) connections: in total
(``--max-connections``) and from one client address (``--max-client-connections``).
A connection over a limit is answered with a 421 reply and closed; admin connections
are not limited (they are local-only unless ``--remote-clients``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emailrelay.net.listen import display_address

if TYPE_CHECKING:
    from emailrelay.app.observer import Observer

log = logging.getLogger("emailrelay")

DEFAULT_MAX_CONNECTIONS = 200  # with a filter running, a session can hold five descriptors
DEFAULT_MAX_CLIENT_CONNECTIONS = 50
LIMITED_KINDS = ("smtp", "pop")

# What a refused client is told, per kind of server.
TOO_MANY = {"smtp": "421 too many connections", "pop": "-ERR too many connections"}
TOO_MANY_FROM_CLIENT = {"smtp": "421 too many connections from your address",
                        "pop": "-ERR too many connections from your address"}


@dataclass(frozen=True)
class ConnectionLimits:
    total: int = DEFAULT_MAX_CONNECTIONS  # 0: no limit
    per_client: int = DEFAULT_MAX_CLIENT_CONNECTIONS  # 0: no limit


@dataclass(eq=False)
class Connection:
    """One open connection; ``tls`` is set by whoever serves it."""

    kind: str  # smtp, pop, admin, or "client" for outgoing
    local: str  # display forms
    peer: str
    address: str  # the peer's IP address ("" for a unix-domain peer)
    incoming: bool = True
    tls: bool = False


@dataclass
class Refusal:
    reply: str  # the line to send before closing
    reason: str  # a metric label: connection_limit or client_connection_limit


@dataclass
class ConnectionRegistry:
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    observer: Observer | None = None
    listeners: list[tuple[str, str]] = field(default_factory=list)  # (kind, address)
    open: list[Connection] = field(default_factory=list)
    in_started: int = 0
    in_finished: int = 0
    out_started: int = 0
    out_finished: int = 0
    _per_client: Counter[str] = field(default_factory=Counter)
    _limited: int = 0

    def add_listener(self, kind: str, address: str) -> None:
        self.listeners.append((kind, address))

    def remove_listeners(self) -> None:
        self.listeners = []

    def admit(self, kind: str, local: tuple[str, str], peer: tuple[str, str]
              ) -> Connection | Refusal:
        """Register an incoming connection, or say why it is refused (and log it)."""
        address = peer[0]
        if kind in LIMITED_KINDS:
            refusal = self._over_limit(kind, address)
            if refusal is not None:
                if self.observer is not None:
                    self.observer.rejected(refusal.reason)
                return refusal
            self._limited += 1
            if address:
                self._per_client[address] += 1
        connection = Connection(kind, _display(local), _display(peer), address)
        self.open.append(connection)
        self.in_started += 1
        if self.observer is not None:
            self.observer.connection_opened(kind)
        return connection

    def _over_limit(self, kind: str, address: str) -> Refusal | None:
        limits = self.limits
        if limits.total and self._limited >= limits.total:
            log.warning("too many connections: refusing the %s connection from %s "
                        "(--max-connections %d)", kind, address or "a unix-domain peer",
                        limits.total)
            return Refusal(TOO_MANY.get(kind, ""), "connection_limit")
        if limits.per_client and address and self._per_client[address] >= limits.per_client:
            log.warning("too many connections from %s: refusing another %s connection "
                        "(--max-client-connections %d)", address, kind, limits.per_client)
            return Refusal(TOO_MANY_FROM_CLIENT.get(kind, ""), "client_connection_limit")
        return None

    def outgoing(self, local: tuple[str, str], state: str) -> Connection:
        """Register a forwarding connection; ``state`` (e.g. the server's address) is
        shown by ``status`` and may be updated on the returned object's ``peer``."""
        connection = Connection("client", _display(local), state, "", incoming=False)
        self.open.append(connection)
        self.out_started += 1
        return connection

    def close(self, connection: Connection) -> None:
        if connection not in self.open:
            return
        self.open.remove(connection)
        if not connection.incoming:
            self.out_finished += 1
            return
        self.in_finished += 1
        if connection.kind in LIMITED_KINDS:
            self._limited -= 1
            if connection.address:
                self._per_client[connection.address] -= 1
                if self._per_client[connection.address] <= 0:
                    del self._per_client[connection.address]
        if self.observer is not None:
            self.observer.connection_closed(connection.kind, connection.tls)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.open if c.kind == kind)

    def report(self) -> list[str]:
        """The admin ``status`` lines, in E-MailRelay's order and words."""
        lines = [f"LISTEN: {address}" for _, address in self.listeners]
        lines += [f"OUT started: {self.out_started}", f"OUT finished: {self.out_finished}"]
        lines += [f"OUT: {c.local} -> {c.peer}" for c in self.open if not c.incoming]
        lines += [f"IN started: {self.in_started}", f"IN finished: {self.in_finished}"]
        lines += [f"IN: {c.local} <- {c.peer}" for c in self.open if c.incoming]
        return lines


def _display(address: tuple[str, str]) -> str:
    host, port = address
    return display_address(host, port) if host else "unix-domain"
