"""Checks on option values and combinations, done before anything listens."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from emailrelay.auth.client import parse_inline_account
from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.filters.spec import parse_chain
from emailrelay.forward.address import AddressError, parse_forward_address
from emailrelay.options.parser import CommandLine, Settings, UsageError
from emailrelay.options.switches import CLIENT_SMTP_DEFAULTS, SERVER_SMTP_DEFAULTS, parse_switches
from emailrelay.options.table import BY_NAME
from emailrelay.policy.dnsbl import DnsblConfig, DnsblConfigError
from emailrelay.tls.config import parse_tls_config
from emailrelay.verify.spec import parse_spec

ANONYMOUS_SCOPES = ("vrfy", "server", "content", "client")
LOG_FORMAT_FIELDS = ("time", "unit", "address", "port", "msgid")
SYSLOG_FACILITIES = ("user", "mail", "daemon", "auth", "authpriv", "cron", "lpr", "news",
                     "uucp", *(f"local{n}" for n in range(8)))

CONFLICTS: tuple[tuple[str, str], ...] = (
    ("as-client", "as-server"),
    ("as-client", "as-proxy"),
    ("as-server", "as-proxy"),
    ("forward-to-some", "forward-to-all"),
)


def _integer(low: int, high: int | None = None) -> Callable[[str], None]:
    def check(text: str) -> None:
        try:
            n = int(text, 10)
        except ValueError:
            raise ValueError("not a number") from None
        if n < low or (high is not None and n > high):
            raise ValueError("out of range" if high is None else f"not between {low} and {high}")
    return check


def _ip_address(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IP address") from None


def keyword_list(allowed: tuple[str, ...]) -> Callable[[str], None]:
    def check(text: str) -> None:
        for item in (w.strip() for w in text.split(",")):
            if item and item.lower() not in allowed:
                raise ValueError(f"unknown keyword \"{item}\" (expected: {', '.join(allowed)})")
    return check


def switch_list(defaults: dict[str, bool]) -> Callable[[str], None]:
    def check(text: str) -> None:
        parse_switches([text], defaults)
    return check


_port = _integer(0, 65535)
_seconds = _integer(0)

VALUE_CHECKS: dict[str, Callable[[str], None]] = {
    "port": _port,
    "pop-port": _port,
    "admin": _port,
    "workers": _integer(1, 64),
    "connection-timeout": _seconds,
    "idle-timeout": _seconds,
    "response-timeout": _seconds,
    "prompt-timeout": _seconds,
    "filter-timeout": _seconds,
    "poll": _seconds,
    "forward-connections": _integer(1, 100),
    "retry-delay": _seconds,
    "retry-max-delay": _seconds,
    "retry-max-age": _seconds,
    "size": _integer(0),
    "max-connections": _integer(0),
    "max-client-connections": _integer(0),
    "shutdown-grace": _seconds,
    "metrics-port": _integer(1, 65535),
    "metrics-address": _ip_address,
    "anonymous": keyword_list(ANONYMOUS_SCOPES),
    "log-format": keyword_list(LOG_FORMAT_FIELDS),
    "server-smtp-config": switch_list(SERVER_SMTP_DEFAULTS),
    "client-smtp-config": switch_list(CLIENT_SMTP_DEFAULTS),
    "syslog": keyword_list(SYSLOG_FACILITIES),
}


def validate(cl: CommandLine) -> list[str]:
    """Raise :class:`UsageError` for the first bad value; return warnings to log."""
    warnings: list[str] = []
    for s in cl.instances:
        _check_values(s)
        _check_conflicts(s)
        _check_pop(s)
        warnings.extend(_pending_and_ignored(s))
        warnings.extend(_check_filters(s))
        _check_forwarding(s)
        warnings.extend(_check_tls(s))
        warnings.extend(_check_auth(s))
        _check_policy(s)
    if len(cl.process.values("pid-file")) > 1:
        warnings.append("more than one --pid-file: using the first")
    return warnings


def _check_values(s: Settings) -> None:
    for name, value in s.given.items():
        check = VALUE_CHECKS.get(name)
        if check is None or value is True:
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                check(item)
            except ValueError as e:
                raise UsageError(f"invalid value for {s.describe(name)}: \"{item}\": {e}") from None


def _check_conflicts(s: Settings) -> None:
    for a, b in CONFLICTS:
        if s.has(a) and s.has(b):
            raise UsageError(f"conflicting options: {s.describe(a)} and {s.describe(b)}")


POP_OPTIONS = ("pop-port", "pop-auth", "pop-by-name", "pop-no-delete")


def _check_pop(s: Settings) -> None:
    """E-MailRelay's semantic checks on the POP options, in its order and words."""
    if not s.has("pop"):
        if any(s.has(name) for name in POP_OPTIONS):
            raise UsageError(f"pop options require {s.describe('pop')}")
        return
    if not s.value("pop-auth"):
        raise UsageError(f"the {s.describe('pop')} option requires {s.describe('pop-auth')}")
    if s.has("dont-serve"):
        raise UsageError(f"the {s.describe('pop')} option cannot be used with --as-client or "
                         "--dont-serve")


def _check_filters(s: Settings) -> list[str]:
    """E-MailRelay's checks on --filter, --client-filter and --address-verifier."""
    if s.has("filter") and s.has("dont-serve"):
        raise UsageError("the --filter option cannot be used with --as-client or --dont-serve")
    if s.has("filter") and s.has("no-smtp"):
        raise UsageError("the --filter option cannot be used with --no-smtp")
    if s.has("client-filter") and not s.has("forward-to"):
        raise UsageError("--client-filter requires --forward-to")
    warnings: list[str] = []
    for name, what in (("filter", "filter"), ("client-filter", "client filter")):
        try:
            warnings += parse_chain(s.values(name))[1]
        except ValueError as e:
            raise UsageError(f"invalid {what} specification: {e}") from None
    if s.has("address-verifier"):
        try:
            warnings += parse_spec(s.value("address-verifier") or "")[1]
        except ValueError as e:
            raise UsageError(f"invalid verifier specification: {e}") from None
    return warnings


def _pending_and_ignored(s: Settings) -> list[str]:
    warnings = []
    for name in s.given:
        opt = BY_NAME[name]
        if opt.pending:
            raise UsageError(f"{s.describe(name)} is not implemented yet (the {opt.pending} "
                             "feature has not landed)")
        if opt.ignored:
            warnings.append(f"{s.describe(name)} is ignored: {opt.ignored}")
    return warnings


SERVER_ONLY = ("filter", "port", "server-auth", "pop", "admin")


def _check_forwarding(s: Settings) -> None:
    """E-MailRelay's semantic checks on the forwarding options, with its wording."""
    d = s.describe
    if s.has("poll") and s.int("poll") == 0:
        raise UsageError(f"invalid {d('poll')} period: try {d('forward-on-disconnect')}")
    has_forward_to = s.has("forward-to")
    for name in ("forward", "forward-on-disconnect", "client-filter"):
        if s.has(name) and not has_forward_to:
            raise UsageError(f"{d(name)} requires {d('forward-to')}")
    if s.flag("dont-serve"):
        for name in SERVER_ONLY:
            if s.has(name):
                raise UsageError(f"the {d(name)} option cannot be used with --as-client or "
                                 f"{d('dont-serve')}")
    if has_forward_to:
        try:
            address = parse_forward_address(s.value("forward-to") or "")
        except AddressError as e:
            raise UsageError(f"invalid {d('forward-to')} address: {e}") from None
        if address.unix and s.has("client-interface"):
            raise UsageError(f"the {d('client-interface')} option cannot be used with a "
                             "unix-domain forwarding address")


def _check_tls(s: Settings) -> list[str]:
    """E-MailRelay's semantic checks on the TLS options, in its order and words; returns
    the --tls-config notes."""
    d = s.describe
    client, client_tunnel = s.flag("client-tls"), s.flag("client-tls-connection")
    server, server_tunnel = s.flag("server-tls"), s.flag("server-tls-connection")
    if client and client_tunnel:
        raise UsageError(f"the {d('client-tls')} and {d('client-tls-connection')} options "
                         "cannot be used together")
    if server and server_tunnel:
        raise UsageError(f"the {d('server-tls')} and {d('server-tls-connection')} options "
                         "cannot be used together")
    for name in ("server-tls", "server-tls-connection"):
        if s.flag(name) and not s.has("server-tls-certificate"):
            raise UsageError(f"the {d(name)} option requires {d('server-tls-certificate')}")
    if (s.has("server-tls-certificate") or s.has("server-tls-verify")) and not (
            server or server_tunnel):
        raise UsageError(f"the {d('server-tls')} options require either {d('server-tls')} or "
                         f"{d('server-tls-connection')}")
    if any(s.has(n) for n in ("client-tls-certificate", "client-tls-verify",
                              "client-tls-required")) and not (client or client_tunnel):
        raise UsageError(f"the {d('client-tls')}- options require {d('client-tls')} or "
                         f"{d('client-tls-connection')}")
    for name in ("server-tls-certificate", "client-tls-certificate"):
        if len(s.values(name)) > 2:
            raise UsageError(f"the {d(name)} option cannot be used more than twice")
    if s.has("client-tls-verify-name") and not s.has("client-tls-verify"):
        raise UsageError(f"the {d('client-tls-verify-name')} options requires "
                         f"{d('client-tls-verify')}")
    if s.flag("server-tls-required") and not (server or server_tunnel):
        raise UsageError(f"{d('server-tls-required')} requires {d('server-tls')} or "
                         f"{d('server-tls-connection')}")
    try:
        return list(parse_tls_config(s.values("tls-config")).notes)
    except ValueError as e:
        raise UsageError(f"invalid value for {d('tls-config')}: {e}") from None


def _check_auth(s: Settings) -> list[str]:
    """E-MailRelay's checks on the authentication options, with its wording."""
    d = s.describe
    if s.has("server-auth") and s.flag("no-smtp"):
        raise UsageError(f"the {d('server-auth')} option cannot be used with {d('no-smtp')}")
    for name in ("server-auth", "client-auth"):
        if s.has(f"{name}-config") and not s.has(name):
            raise UsageError(f"the {d(name + '-config')} option requires {d(name)}")
    for name, bare_list in (("server-auth-config", False), ("client-auth-config", True)):
        try:
            MechanismConfig.parse(s.value(name) or "", bare_list=bare_list)
        except ValueError as e:
            raise UsageError(f"invalid {d(name)} value: {e}") from None
    client_auth = s.value("client-auth") or ""
    if client_auth.startswith("plain:"):
        try:
            parse_inline_account(client_auth)
        except ValueError as e:
            raise UsageError(f"invalid {d('client-auth')} value: {e}") from None
    return [f"pam authentication should be enabled with pam: rather than /pam ({d(name)})"
            for name in ("server-auth", "pop-auth") if s.value(name) == "/pam"]


def _check_policy(s: Settings) -> None:
    """E-MailRelay's checks on --dnsbl and --admin, and ours on the metrics port."""
    d = s.describe
    if (s.int("workers") or 1) > 1 and s.flag("immediate"):
        raise UsageError(f"the {d('workers')} option cannot be used with {d('immediate')}: "
                         "worker processes do not forward")
    if s.has("admin-terminate") and not s.has("admin"):
        raise UsageError(f"the {d('admin-terminate')} option requires {d('admin')}")
    if s.has("metrics-address") and not s.has("metrics-port"):
        raise UsageError(f"the {d('metrics-address')} option requires {d('metrics-port')}")
    if s.has("dnsbl"):
        if not s.has("remote-clients"):
            raise UsageError(f"{d('dnsbl')} requires {d('remote-clients')} or -r")
        try:
            DnsblConfig.parse(",".join(s.values("dnsbl")))
        except DnsblConfigError as e:
            raise UsageError(f"invalid dnsbl configuration: {e}") from None
