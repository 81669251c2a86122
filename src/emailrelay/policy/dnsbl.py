"""``--dnsbl``: checking SMTP clients against DNS block lists (RFC 5782).

The option value is E-MailRelay 2.6's::

    list[,list...][,threshold[,timeout[,dns-server]]]      e.g. zen.example,2,1500,127.0.0.1:53
    dns-server,timeout,threshold,list[,list...]            the older order (four fields or more)

A client is blocked when at least ``threshold`` lists (default 1) have it; threshold 0
consults the lists and logs but never blocks.  The timeout is in milliseconds (or
seconds with an ``s`` suffix, default 5000); a negative timeout blocks clients the lists
could not decide on in time, a positive one lets them in.  The DNS server defaults to the
system's first name server.

Every list is asked at once, with dnspython's asynchronous resolver, and the answer
comes as soon as it is certain (enough listings, or too few lists left to reach the
threshold).  Answers are kept in an LRU cache for their DNS time-to-live.  Loopback,
private and link-local clients (:func:`emailrelay.net.local.is_local`) are never looked
up.

Where E-MailRelay is lax we are stricter, following RFC 5782: only A records inside
127.0.0.0/8 count as listings (IPv6 clients are looked up with nibble-reversed names and
A records too); any other answer -- such as the 127.255.255.x codes lists use to say
"you may not query us this way", or an address from a resolver that rewrites NXDOMAIN --
and SERVFAIL or REFUSED count as "no answer" from that list, not as a listing.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from emailrelay.logs.setup import verbose
from emailrelay.net.local import is_local

log = logging.getLogger("emailrelay.dnsbl")

DEFAULT_THRESHOLD = 1
DEFAULT_TIMEOUT_MS = 5000
CACHE_SIZE = 10000  # cached answers (the cache honours each answer's TTL)

_LISTING_RANGE = ipaddress.ip_network("127.0.0.0/8")
_ERROR_CODES = ipaddress.ip_network("127.255.255.0/24")  # "query refused" and the like


class DnsblConfigError(ValueError):
    """A ``--dnsbl`` value that cannot be used."""


@dataclass(frozen=True)
class DnsblConfig:
    lists: tuple[str, ...]
    threshold: int = DEFAULT_THRESHOLD
    timeout: float = DEFAULT_TIMEOUT_MS / 1000  # seconds
    block_when_undecided: bool = False  # a negative timeout
    nameserver: tuple[str, int] | None = None  # None: the system's first name server

    @property
    def log_only(self) -> bool:
        return self.threshold == 0

    @classmethod
    def parse(cls, text: str) -> DnsblConfig:
        fields = [f.strip() for f in text.split(",")]
        if not fields or not any(fields):
            raise DnsblConfigError("not enough comma-separated fields")
        if not _is_domain(fields[0]):
            # The older order: dns-server,timeout,threshold,list...
            if len(fields) < 4:
                raise DnsblConfigError("not enough comma-separated fields")
            server, timeout, threshold, lists = fields[0], fields[1], fields[2], fields[3:]
        else:
            count = 0
            while count < len(fields) and _is_domain(fields[count]):
                count += 1
            lists, rest = fields[:count], fields[count:]
            threshold = rest.pop(0) if rest else str(DEFAULT_THRESHOLD)
            timeout = rest.pop(0) if rest else str(DEFAULT_TIMEOUT_MS)
            server = rest.pop(0) if rest else ""
            if rest:
                raise DnsblConfigError(f"unused fields: {','.join(rest)}")
        seconds, negative = _timeout(timeout)
        return cls(lists=tuple(_list_name(name) for name in lists),
                   threshold=_threshold(threshold), timeout=seconds,
                   block_when_undecided=negative,
                   nameserver=parse_nameserver(server) if server else None)


def _is_domain(text: str) -> bool:
    """A list name, as opposed to a number or an address (top-level domains are words)."""
    if not text or any(c in text for c in ":[]/ "):
        return False
    if all(c.isdigit() or c == "." for c in text):
        return False
    tld = text.rpartition(".")[2]
    return not tld or (not tld.isdigit() and all(c.isalnum() or c in "-_" for c in tld))


MAX_NAME_OCTETS = 255
IPV6_QUERY_OCTETS = 64


def _list_name(text: str) -> str:
    try:
        name = dns.name.from_text(text.rstrip("."))
    except dns.exception.DNSException as e:
        raise DnsblConfigError(f"invalid list name \"{text}\": {e}") from None
    if len(name.labels) < 2:  # just the root
        raise DnsblConfigError("empty list name")
    # An IPv6 client's query puts 32 one-nibble labels (64 octets) in front of the list's
    # name, and a DNS name holds at most 255 octets.
    if len(name.to_wire()) + IPV6_QUERY_OCTETS > MAX_NAME_OCTETS:
        raise DnsblConfigError(f"list name too long \"{text}\": no room for an IPv6 "
                               "client's query")
    return name.to_text(omit_final_dot=True)


def _threshold(text: str) -> int:
    if not text.isdigit():
        raise DnsblConfigError(f"invalid threshold \"{text}\": expected a whole number")
    return int(text)


def _timeout(text: str) -> tuple[float, bool]:
    """``5000``, ``-5000``, ``5s`` or ``-5s`` -> (seconds, negative)."""
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    unit = 1.0
    if digits.endswith("s"):
        digits, unit = digits[:-1], 1000.0
    if not digits.isdigit() or int(digits) == 0:
        raise DnsblConfigError(f"invalid timeout \"{text}\": expected milliseconds, or "
                               "seconds with an s suffix")
    return int(digits) * unit / 1000, negative


def parse_nameserver(text: str) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[ipv6]:port`` (port 53 when not given)."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise DnsblConfigError(f"invalid dns server address \"{text}\"")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DnsblConfigError(f"invalid dns server address \"{text}\": not an IP "
                               "address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DnsblConfigError(f"invalid dns server address \"{text}\": bad port")
    return host, int(port)


def query_name(address: str, zone: str) -> str:
    """RFC 5782: ``192.0.2.99`` in ``bl.example`` -> ``99.2.0.192.bl.example.``."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    reverse = (dns.reversename.ipv4_reverse_domain if ip.version == 4
               else dns.reversename.ipv6_reverse_domain)
    labels = dns.reversename.from_address(str(ip)).relativize(reverse)
    return labels.concatenate(dns.name.from_text(zone)).to_text()


# -- results --------------------------------------------------------------------------------

class Answer(enum.Enum):
    LISTED = "listed"
    UNLISTED = "unlisted"
    NO_ANSWER = "no answer"  # timed out, failed or an answer that is not a listing


class Verdict(enum.Enum):
    INACTIVE = "inactive"  # no lists, or suspended from the admin interface
    LOCAL = "local"  # a local address: not checked
    ALLOW = "allow"
    DENY = "deny"
    UNDECIDED_ALLOW = "undecided, allowed"
    UNDECIDED_DENY = "undecided, blocked"

    @property
    def allowed(self) -> bool:
        return self not in (Verdict.DENY, Verdict.UNDECIDED_DENY)


@dataclass
class ListResult:
    zone: str
    answer: Answer = Answer.NO_ANSWER
    addresses: list[str] = field(default_factory=list)
    detail: str = "timeout"  # why there is no answer


@dataclass
class DnsblResult:
    address: str
    verdict: Verdict
    lists: list[ListResult] = field(default_factory=list)
    log_only: bool = False

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def listed_by(self) -> list[str]:
        return [r.zone for r in self.lists if r.answer is Answer.LISTED]

    @property
    def unanswered(self) -> list[str]:
        return [r.zone for r in self.lists if r.answer is Answer.NO_ANSWER]

    def log(self) -> None:
        """The log lines E-MailRelay writes, naming the lists that decided."""
        ip = self.address
        if self.verdict is Verdict.LOCAL:
            verbose("dnsbl: not checking local address [%s]", ip)
            return
        for r in self.lists:
            if r.answer is Answer.LISTED:
                verbose("dnsbl: address [%s] denied by [%s]: %s", ip, r.zone,
                        " ".join(r.addresses))
            elif r.answer is Answer.UNLISTED:
                verbose("dnsbl: address [%s] allowed by [%s]", ip, r.zone)
            else:
                verbose("dnsbl: address [%s] not checked by [%s]: %s", ip, r.zone, r.detail)
        listed = " ".join(f"[{z}]" for z in self.listed_by)
        silent = " ".join(f"[{z}]" for z in self.unanswered)
        if self.verdict is Verdict.DENY:
            log.warning("dnsbl: client address [%s] blocked by %s", ip, listed)
        elif self.verdict is Verdict.UNDECIDED_DENY:
            log.warning("dnsbl: client address [%s] blocked: timeout: no answer from %s",
                        ip, silent)
        elif self.verdict is Verdict.UNDECIDED_ALLOW:
            log.warning("dnsbl: client address [%s]: timeout: no answer from %s", ip, silent)
        if self.log_only and listed:
            log.info("dnsbl: client address [%s] listed by %s: allowed (threshold 0 only "
                     "logs)", ip, listed)


# -- checking -------------------------------------------------------------------------------

def make_resolver(config: DnsblConfig) -> dns.asyncresolver.Resolver:
    """A resolver that asks only the configured (or the system's first) name server."""
    host, port = config.nameserver or _system_nameserver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = resolver.lifetime = config.timeout
    resolver.retry_servfail = False
    resolver.cache = dns.resolver.LRUCache(CACHE_SIZE)
    return resolver


def _system_nameserver() -> tuple[str, int]:
    try:
        system = dns.resolver.Resolver()
    except dns.exception.DNSException:
        return "127.0.0.1", 53
    for server in system.nameservers:
        return str(server), system.port
    return "127.0.0.1", 53


class DnsblChecker:
    """Checks client addresses against the configured lists; the admin interface's
    ``dnsbl stop [<seconds>]`` suspends it and ``dnsbl start`` resumes."""

    def __init__(self, config: DnsblConfig,
                 resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver or make_resolver(config)
        self._suspended_until: float | None = None  # monotonic; inf: until "dnsbl start"

    @property
    def suspended(self) -> bool:
        return self._suspended_until is not None and time.monotonic() < self._suspended_until

    def suspend(self, seconds: int | None) -> None:
        """Stop checking for ``seconds`` (None: until resumed; 0 resumes now)."""
        if seconds == 0:
            self._suspended_until = None
            verbose("dnsbl enabled")
        elif seconds is None:
            self._suspended_until = float("inf")
            verbose("dnsbl disabled")
        else:
            self._suspended_until = time.monotonic() + seconds
            verbose("dnsbl disabled for %ds", seconds)

    async def check(self, address: str) -> DnsblResult:
        config = self.config
        if not config.lists or self.suspended:
            return DnsblResult(address, Verdict.INACTIVE)
        if is_local(address):
            return DnsblResult(address, Verdict.LOCAL)
        results = {zone: ListResult(zone) for zone in config.lists}
        tasks = {asyncio.ensure_future(self._ask(address, zone)): zone for zone in config.lists}
        deadline = asyncio.get_running_loop().time() + config.timeout
        pending = set(tasks)
        try:
            while pending and not self._decided(results, len(pending)):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(pending, timeout=remaining,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    results[tasks[task]] = task.result()
        finally:
            for task in pending:
                task.cancel()
        lists = [results[zone] for zone in config.lists]
        return DnsblResult(address, self._verdict(lists), lists, config.log_only)

    def _decided(self, results: dict[str, ListResult], waiting: int) -> bool:
        threshold = self.config.threshold
        listed = sum(r.answer is Answer.LISTED for r in results.values())
        return threshold > 0 and (listed >= threshold or listed + waiting < threshold)

    def _verdict(self, lists: list[ListResult]) -> Verdict:
        threshold = self.config.threshold
        listed = sum(r.answer is Answer.LISTED for r in lists)
        silent = sum(r.answer is Answer.NO_ANSWER for r in lists)
        if threshold and listed >= threshold:
            return Verdict.DENY
        if not silent or (threshold and listed + silent < threshold):
            return Verdict.ALLOW
        if self.config.block_when_undecided and threshold:
            return Verdict.UNDECIDED_DENY
        return Verdict.UNDECIDED_ALLOW

    async def _ask(self, address: str, zone: str) -> ListResult:
        result = ListResult(zone)
        try:
            answer = await self.resolver.resolve(query_name(address, zone), "A", search=False,
                                                 raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            result.answer = Answer.UNLISTED
            return result
        except dns.exception.Timeout:
            return result
        except dns.resolver.NoNameservers as e:
            result.detail = _failure(e)
            return result
        except dns.exception.DNSException as e:
            result.detail = str(e) or type(e).__name__
            return result
        addresses = [r.address for r in answer.rrset or ()]
        codes = [ipaddress.ip_address(a) for a in addresses]
        if any(c in _LISTING_RANGE and c not in _ERROR_CODES for c in codes):
            result.answer, result.addresses = Answer.LISTED, addresses
        elif not codes:
            result.answer = Answer.UNLISTED
        else:
            result.detail = f"not a listing: {' '.join(addresses)}"
        return result


def _failure(error: dns.resolver.NoNameservers) -> str:
    """``SERVFAIL``, ``REFUSED``... from the resolver's error list."""
    for entry in error.kwargs.get("errors", []):
        if len(entry) >= 4 and isinstance(entry[3], str):
            return entry[3]
    return "no name server answered"
