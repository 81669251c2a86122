"""Secrets files (``--pop-auth``, ``--server-auth``, ``--client-auth``) in E-MailRelay 2.6's format.

One account per line, four or five fields separated by blanks::

    server plain alice e+3Dmc2                 # xtext: alice / "e=mc2"
    server plain:b YWxpY2U= ZT1tYzI=           # base64: the same account
    server md5 carol x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=   # emailrelay-passwd
    server none 192.168.0.* localipv4          # trust SMTP clients from these addresses
    client plain bob password123 [selector]    # forwarding account, optional selector
    client plain:b = = noauth                  # selector that means "no authentication"
    client oauth bob <base64 token>
    client oauth2 bob /etc/emailrelay/bob.json # refreshable OAuth2 (our extension)

``#`` starts a comment line (or a comment in the fifth field).  The side and the type
are case-insensitive; ``login`` means ``plain``, ``cram-md5`` and ``apop`` mean ``md5``.
Lines in the old field order that OpenWrt's default file shows (``NONE server ...``,
``LOGIN client ...``, ``LOGIN server ...``) are read as their 2.6 equivalents.  A line
that cannot be read is an error naming the file and line; start-up fails on it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import stat
import time
from dataclasses import dataclass, field

from emailrelay.auth import hashstate
from emailrelay.process.daemon import StartupError
from emailrelay.util import xtext

log = logging.getLogger("emailrelay.auth")

SERVER, CLIENT = "server", "client"
PLAIN, MD5, NONE, OAUTH, OAUTH2 = "plain", "md5", "none", "oauth", "oauth2"
# Type aliases kept from older E-MailRelay releases.
_TYPE_ALIASES = {"login": PLAIN, "cram-md5": MD5, "apop": MD5}
# Hashed types emailrelay-passwd can make (--hash); sha512 is read but has no mechanism.
_HASHED_TYPES = (*hashstate.HASHES, "sha512")
# Old (1.x) field order: mechanism first, then side.  Their secrets are plain text,
# except CRAM-MD5 lines holding a dotted md5 state.
_OLD_MECHANISMS = {"login": PLAIN, "apop": PLAIN, "cram-md5": PLAIN, "none": NONE}
RELOAD_INTERVAL = 1.0  # seconds between checks for a changed file


class SecretsError(Exception):
    """A secrets file that cannot be used; the message names the file and lines."""


@dataclass(frozen=True)
class Secret:
    side: str  # "server" or "client"
    type: str  # "plain", "md5", "oauth", ... (lower case)
    id: str  # the user name, decoded
    value: bytes  # the password (plain), the 32-byte HMAC-MD5 state (md5), the token...
    selector: str = ""  # client account selector
    line: int = 0

    def describe(self) -> str:
        return f"{self.type} secret from line {self.line} for [{self.id}]"


@dataclass(frozen=True)
class TrustRule:
    """A ``server none`` line: SMTP clients from ``network`` need not authenticate."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    text: str  # the address range as written
    keyword: str  # passed to the address verifier
    line: int


@dataclass
class Secrets:
    source: str = ""
    server: dict[tuple[str, str], Secret] = field(default_factory=dict)  # (type, id)
    client: dict[tuple[str, str], Secret] = field(default_factory=dict)  # (type, selector)
    noauth_selectors: set[str] = field(default_factory=set)
    trust: list[TrustRule] = field(default_factory=list)

    # -- server side ------------------------------------------------------------------------

    def server_secret(self, type_: str, user: str) -> Secret | None:
        return self.server.get((type_.lower(), user))

    def server_types(self) -> set[str]:
        return {t for t, _ in self.server}

    def server_users(self) -> list[str]:
        return sorted({user for _, user in self.server})

    def trusted(self, address: str) -> TrustRule | None:
        """The most specific trust rule covering ``address``, if any."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        matches = [r for r in self.trust if ip.version == r.network.version and ip in r.network]
        return max(matches, key=lambda r: r.network.prefixlen, default=None)

    # -- client side ------------------------------------------------------------------------

    def client_secret(self, type_: str, selector: str = "") -> Secret | None:
        return self.client.get((type_.lower(), selector))

    def client_types(self, selector: str = "") -> set[str]:
        return {t for t, s in self.client if s == selector}

    def selectors(self) -> set[str]:
        return {s for _, s in self.client} | self.noauth_selectors

    def is_noauth(self, selector: str) -> bool:
        return selector in self.noauth_selectors


# -- parsing ---------------------------------------------------------------------------------

class _LineError(Exception):
    pass


def parse_secrets(text: str, source: str = "secrets") -> tuple[Secrets, list[str]]:
    """Parse a whole file: returns the secrets and warnings; raises :class:`SecretsError`."""
    secrets = Secrets(source)
    errors: list[str] = []
    warnings: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            _parse_line(secrets, line, number, warnings)
        except _LineError as e:
            errors.append(f"line {number}: {e}")
    if errors:
        raise SecretsError(f"invalid secrets file \"{source}\": " + "; ".join(errors))
    return secrets, [f"secrets file \"{source}\": {w}" for w in warnings]


def _parse_line(secrets: Secrets, line: str, number: int, warnings: list[str]) -> None:
    words = line.split()
    if not words or words[0].startswith("#"):
        return
    if len(words) < 4:
        raise _LineError("too few fields")
    if len(words) > 4 and words[4].startswith("#"):
        words = words[:4]
    elif len(words) > 5 and not words[5].startswith("#"):
        warnings.append(f"line {number}: too many fields: the extra ones are ignored")
    words = words[:5]
    side, type_field, user_field, secret_field = words[:4]
    selector = words[4] if len(words) > 4 else ""
    if side.lower() not in (SERVER, CLIENT):
        if type_field.lower() in (SERVER, CLIENT) and side.lower() in _OLD_MECHANISMS:
            _old_style(secrets, words, number, warnings)
            return
        raise _LineError(f"invalid value in first field: [{side}]")
    _add(secrets, side.lower(), type_field, user_field, secret_field, selector, number)


def _old_style(secrets: Secrets, words: list[str], number: int, warnings: list[str]) -> None:
    mechanism, side, user_field, secret_field = words[0].lower(), words[1].lower(), *words[2:4]
    selector = words[4] if len(words) > 4 else ""
    if mechanism == "cram-md5" and hashstate.is_dotted(secret_field):
        type_field = MD5
    else:
        type_field = _OLD_MECHANISMS[mechanism]
    rest = " ".join(w for w in (user_field, secret_field, selector) if w)
    warnings.append(f"line {number}: old field order: read as \"{side} {type_field} {rest}\"")
    _add(secrets, side, type_field, user_field, secret_field, selector, number)


def _add(secrets: Secrets, side: str, type_field: str, user_field: str, secret_field: str,
         selector: str, number: int) -> None:
    base_type, _, decoration = type_field.partition(":")
    type_ = _TYPE_ALIASES.get(base_type.lower(), base_type.lower())
    if type_ == NONE:
        if side != SERVER:
            raise _LineError("\"none\" lines are server lines: \"server none <address-range> "
                             "<keyword>\"")
        _add_trust(secrets, user_field, secret_field, number)
        return
    if side == CLIENT and type_field.lower() == "plain:b" and user_field == secret_field == "=":
        secrets.noauth_selectors.add(selector)
        return
    if decoration and not (type_ == PLAIN and decoration.lower() == "b"):
        raise _LineError(f"invalid password type [{type_field}]: use plain, plain:b or md5")
    known = (PLAIN, *_HASHED_TYPES, *((OAUTH, OAUTH2) if side == CLIENT else ()))
    if type_ not in known:
        raise _LineError(f"invalid password type [{type_field}]: use "
                         + ", ".join(known))
    if type_ == PLAIN and decoration:
        user = _base64(user_field, "user name").decode("utf-8", "surrogateescape")
        value = _base64(secret_field, "password")
    elif type_ in (PLAIN, OAUTH2):  # (an oauth2 secret is the path of its account file)
        user, value = xtext.decode(user_field), _bytes(xtext.decode(secret_field))
    elif type_ == MD5 and hashstate.is_dotted(secret_field):
        user, value = xtext.decode(user_field), hashstate.from_dotted(secret_field)
    else:
        user, value = xtext.decode(user_field), _base64(secret_field, "secret")
        if type_ in hashstate.HASHES and len(value) != hashstate.secret_size(type_):
            raise _LineError(f"invalid {type_} secret: expected the base64 value that "
                             f"emailrelay-passwd --hash={type_} prints")
    secret = Secret(side, type_, user, value, selector if side == CLIENT else "", number)
    if side == SERVER:
        key = (type_, user)
        if key in secrets.server:
            raise _LineError("duplicate server secret")
        secrets.server[key] = secret
    else:
        key = (type_, selector)
        if key in secrets.client:
            raise _LineError("duplicate client secret")
        secrets.client[key] = secret


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _LineError(f"invalid base64 encoding of the {what}") from None


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _add_trust(secrets: Secrets, address_range: str, keyword: str, number: int) -> None:
    network = parse_address_range(address_range)
    if network is None:
        raise _LineError(f"invalid address range [{address_range}]: use an address, "
                         "a wildcard such as 192.168.0.* or a prefix such as fe80::/64")
    if any(rule.network == network for rule in secrets.trust):
        raise _LineError("duplicate server trust address")
    secrets.trust.append(TrustRule(network, address_range, keyword, number))


def parse_address_range(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``192.168.0.*``, ``192.168.*.*``, ``10.0.0.0/8``, ``fe80::/64`` or one address."""
    if "*" in text:
        octets = text.split(".")
        if len(octets) != 4:
            return None
        fixed = 0
        while fixed < 4 and octets[fixed] != "*":
            fixed += 1
        if any(o != "*" for o in octets[fixed:]):
            return None
        text = ".".join(octets[:fixed] + ["0"] * (4 - fixed)) + f"/{8 * fixed}"
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


# -- files -----------------------------------------------------------------------------------

def read_secrets(path: str) -> tuple[Secrets, list[str]]:
    """Read and parse a secrets file: (secrets, warnings) or :class:`SecretsError`."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise SecretsError(f"cannot read secrets file \"{path}\": {e.strerror}") from None
    secrets, warnings = parse_secrets(text, path)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        warnings.insert(0, f"secrets file \"{path}\" is readable by other users: "
                           f"use chmod 600 \"{path}\"")
    return secrets, warnings


class SecretsFile:
    """A secrets file that is read again when it changes (checked at most once a second)
    and on SIGHUP (:meth:`reload`).

    A change that makes the file unreadable or invalid is logged and the previous
    contents stay in force.  ``warnings`` holds the first reading's warnings, for the
    caller to log at start-up.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"secrets file \"{path}\""
        self._stamp = self._mtime()
        self._secrets, self.warnings = read_secrets(path)
        self._checked = time.monotonic()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def current(self) -> Secrets:
        now = time.monotonic()
        if now - self._checked >= RELOAD_INTERVAL:
            self._checked = now
            stamp = self._mtime()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                log.info("re-reading secrets file: %s", self.path)
                try:
                    self.reload()
                except SecretsError as e:
                    log.error("%s: still using the previous contents", e)
        return self._secrets

    def files(self) -> list[str]:
        return [self.path]

    def reload(self) -> None:
        """Read the file now; on :class:`SecretsError` the previous contents stay."""
        stamp = self._mtime()
        self._secrets, warnings = read_secrets(self.path)
        self._stamp = stamp
        for warning in warnings:
            log.warning("%s", warning)


def load_secrets_file(path: str) -> SecretsFile:
    """Read a secrets file at start-up: one that cannot be read or parsed is a start-up
    error, and what the file deserves a warning for (others can read it...) is logged."""
    try:
        secrets = SecretsFile(path)
    except SecretsError as e:
        raise StartupError(str(e)) from None
    for warning in secrets.warnings:
        log.warning("%s", warning)
    return secrets
