"""``mx:``: find the mail server for a message's ``ForwardTo`` domain.

The answer goes into the envelope's ``ForwardToAddress`` (``ip:port``) for the
forwarding agent.  The domain's MX records are looked up (with dnspython) and the
most preferred host's address (A, then AAAA) is used; a domain without MX records
is its own mail host (RFC 5321 5.1).  ``ForwardTo`` may carry a ``user@`` prefix
(ignored) and a ``:<port>`` suffix (default 25); an address literal such as
``[192.0.2.1]`` is copied without a lookup.  An answer of ``0.0.0.0`` clears
``ForwardToAddress``, sending the message to the default ``--forward-to``.

Options (``;``-separated): DNS servers (``ip`` or ``ip:port``, tried in order;
default: the system's), ``nst=<s>`` the time allowed to each server for one query,
``rt=<s>`` the time allowed to one lookup across all servers.  The whole filter is
bounded by ``--filter-timeout``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult, failure
from emailrelay.spool.envelope import parse
from emailrelay.spool.store import write_envelope_file

log = logging.getLogger("emailrelay.filters")

DEFAULT_NAMESERVER_TIMEOUT = 5.0
DEFAULT_LOOKUP_TIMEOUT = 30.0


class LookupError_(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class MxConfig:
    nameservers: tuple[tuple[str, int], ...] = ()
    nameserver_timeout: float = DEFAULT_NAMESERVER_TIMEOUT
    lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT


def parse_options(options: str) -> tuple[MxConfig, list[str]]:
    """The ``mx:`` options; unusable items come back as warnings."""
    servers: list[tuple[str, int]] = []
    nst, rt = DEFAULT_NAMESERVER_TIMEOUT, DEFAULT_LOOKUP_TIMEOUT
    warnings = []
    for item in (w.strip() for w in options.split(";")):
        if not item:
            continue
        if item.startswith("nst=") and item[4:].isdigit():
            nst = float(item[4:])
        elif item.startswith("rt=") and item[3:].isdigit():
            rt = float(item[3:])
        elif (server := _nameserver(item)) is not None:
            servers.append(server)
        else:
            warnings.append(f"invalid mx filter configuration: ignoring [{item}]")
    return MxConfig(tuple(servers), nst, rt), warnings


def _nameserver(text: str) -> tuple[str, int] | None:
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and (not rest.startswith(":") or not rest[1:].isdigit()):
            return None
        port = int(rest[1:]) if rest else 53
    elif text.count(":") == 1:
        host, _, service = text.partition(":")
        if not service.isdigit():
            return None
        port = int(service)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port) if 0 < port < 65536 else None


@dataclasses.dataclass(frozen=True)
class ForwardTo:
    domain: str
    port: int  # 0: not given
    literal: str  # "ip:port" for an address literal, else ""


def parse_forward_to(text: str) -> ForwardTo:
    text = text.split("@", 1)[1] if "@" in text else text
    head, sep, tail = text.rpartition(":")
    with_port = bool(sep) and tail.isdigit()
    domain = head if with_port else text
    port = int(tail) if with_port else 0
    return ForwardTo(domain, port, _address_literal(domain, port or 25))


def _address_literal(domain: str, port: int) -> str:
    if len(domain) < 3 or not (domain.startswith("[") and domain.endswith("]")):
        return ""
    inner = domain[1:-1]
    ipv6 = inner.lower().startswith("ipv6:")
    try:
        address = ipaddress.ip_address(inner[5:] if ipv6 else inner)
    except ValueError:
        return ""
    if (address.version == 6) != ipv6:
        return ""
    return display(str(address), port)


def display(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class MxFilter:
    def __init__(self, options: str, config: FilterConfig) -> None:
        self.id = "mx:"
        self.config = config
        self.mx, _ = parse_options(options)

    def _resolver(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=not self.mx.nameservers)
        if self.mx.nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                    for host, port in self.mx.nameservers]
        resolver.timeout = self.mx.nameserver_timeout
        resolver.lifetime = self.mx.lookup_timeout
        return resolver

    async def lookup(self, domain: str, port: int) -> str:
        """``ip:port`` of the domain's preferred mail server."""
        resolver = self._resolver()
        host = domain
        try:
            answer = await resolver.resolve(domain, "MX")
            best = min(answer, key=lambda r: r.preference)  # type: ignore[attr-defined]
            host = best.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            if host in ("", "."):
                raise LookupError_(f"{domain} accepts no mail (null MX)")
        except dns.resolver.NoAnswer:
            pass  # no MX records: the domain is its own mail host
        except dns.resolver.NXDOMAIN:
            raise LookupError_(f"no such domain: {domain}") from None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(host, rdtype)
                return display(answer[0].address, port or 25)  # type: ignore[attr-defined]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
        raise LookupError_(f"no address for {host}")

    async def run(self, job: FilterJob) -> FilterResult:
        prefix = f"{self.config.kind} [mx:]"
        envelope = await asyncio.to_thread(lambda: parse(job.envelope.read_bytes()))
        target = parse_forward_to(envelope.forward_to)
        if target.literal:
            log.info("%s copying forward-to to forward-to-address: %s", prefix, target.literal)
            await self._set_address(job, target.literal)
            return OK
        if not target.domain:
            log.info("%s no forward-to domain", prefix)
            return OK
        log.info("%s looking up [%s]", prefix, target.domain)
        error = ""
        try:
            address = await asyncio.wait_for(self.lookup(target.domain, target.port),
                                             self.config.timeout or None)
        except TimeoutError:
            address, error = "", "mx: timeout"
        except (LookupError_, dns.exception.DNSException) as e:
            address, error = "", f"mx: {e}"
        if address.startswith("0.0.0.0:"):
            address = ""  # "no address": the default --forward-to
        log.info("%s: [%s]: setting forward-to-address [%s]%s", prefix, job.message_id, address,
                 f" ({error})" if error else "")
        await self._set_address(job, address)
        return failure("failed", error) if error else OK

    async def _set_address(self, job: FilterJob, address: str) -> None:
        def edit() -> None:
            envelope = parse(job.envelope.read_bytes())
            write_envelope_file(job.envelope,
                                dataclasses.replace(envelope, forward_to_address=address))
        await asyncio.to_thread(edit)

    def close(self) -> None:
        pass
