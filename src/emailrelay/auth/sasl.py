"""Sans-I/O SASL server mechanisms, shared by the POP server and SMTP AUTH.

A :class:`Mechanism` gives its first challenge with :meth:`~Mechanism.challenge` and
takes each decoded client response with :meth:`~Mechanism.respond`, which returns the
next challenge (bytes) or an :class:`Outcome`.  Base64, reply codes and line handling
belong to the protocol using it; nothing here does I/O.

Mechanisms offered, as E-MailRelay 2.6 built with OpenSSL offers them: with any
``plain`` server secret ``CRAM-SHA512 CRAM-SHA256 CRAM-SHA1 CRAM-MD5 PLAIN LOGIN``.
With only hashed (``md5``, ``sha1``, ``sha256``) secrets E-MailRelay offers the matching
CRAM mechanisms alone; we also offer PLAIN and LOGIN there, checking the password by
deriving its hash state (see :mod:`hashstate`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from emailrelay.auth import hashstate
from emailrelay.auth.secrets import MD5, PLAIN, Secret, Secrets
from emailrelay.util.printable import printable

CRAM_HASHES = ("SHA512", "SHA256", "SHA1", "MD5")  # strongest first
# Hashed secret types, strongest first, each usable with its own CRAM mechanism.
HASHED = ("sha256", "sha1", MD5)
_DUMMY = b"\0" * 32  # compared against when there is no account, to take the same time


def cram_mechanisms(types: set[str]) -> list[str]:
    """The CRAM mechanisms that secrets of these types can answer, strongest first."""
    if PLAIN in types:
        return [f"CRAM-{h}" for h in CRAM_HASHES]
    return [f"CRAM-{h.upper()}" for h in HASHED if h in types]


def cram_digest(hash_name: str, challenge: bytes, hashed: Secret | None,
                plain: Secret | None) -> tuple[Secret, bytes] | None:
    """The CRAM HMAC of ``challenge`` and the secret it came from: a hashed secret's
    stored state when there is one for this hash, else the plain password."""
    if hashed is not None and hash_name in HASHED:
        return hashed, hashstate.hmac_from_secret(hashed.value, challenge, hash_name)
    if plain is not None:
        return plain, hmac.new(plain.value, challenge, hash_name).digest()
    return None


@dataclass(frozen=True)
class Outcome:
    """The end of an exchange; ``reason`` says why it failed (for the log only)."""

    ok: bool
    user: str
    mechanism: str
    reason: str = ""

    def describe(self) -> str:
        """The log text, E-MailRelay's words: fail2ban filters match "failed authentication".

        The user name came from the network: it is escaped so that it cannot forge lines.
        """
        text = (f"{'successful' if self.ok else 'failed'} authentication of remote client "
                f"using mechanism [{self.mechanism.lower()}] and user [{printable(self.user)}]")
        return text if self.ok else f"{text}: {self.reason}"


def make_challenge(domain: str) -> str:
    """A fresh challenge as E-MailRelay makes them: ``<random.time@domain>``."""
    return f"<{random.randbits(32)}.{int(time.time())}@{domain}>"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def check_password(secrets: Secrets, user: str, password: bytes) -> str | None:
    """None if ``password`` is ``user``'s, else the reason it is not."""
    plain = secrets.server_secret(PLAIN, user)
    if plain is not None:
        return None if hmac.compare_digest(plain.value, password) else "wrong password"
    for type_ in HASHED:
        hashed = secrets.server_secret(type_, user)
        if hashed is not None:
            derived = hashstate.make_secret(password, type_)
            return None if hmac.compare_digest(hashed.value, derived) else "wrong password"
    hmac.compare_digest(_DUMMY, password)
    return "no such account"


class Mechanism(ABC):
    name: str = ""
    server_first = False  # an initial response with the AUTH command is not allowed

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets

    @abstractmethod
    def challenge(self) -> bytes:
        """The first challenge (empty for client-first mechanisms)."""

    @abstractmethod
    def respond(self, data: bytes) -> bytes | Outcome:
        """Take a decoded response: the next challenge, or the outcome."""

    def _outcome(self, user: str, reason: str | None) -> Outcome:
        return Outcome(reason is None, user, self.name, reason or "")


class Plain(Mechanism):
    """RFC 4616: ``authzid NUL authcid NUL password`` in one response."""

    name = "PLAIN"

    def challenge(self) -> bytes:
        return b""

    def respond(self, data: bytes) -> Outcome:
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return self._outcome("", "malformed PLAIN response")
        authzid, user = _text(parts[0]), _text(parts[1])
        if authzid and authzid != user:
            return self._outcome(user, f"acting for another user [{printable(authzid)}] is "
                                 "not allowed")
        return self._outcome(user, check_password(self.secrets, user, parts[2]))


class Login(Mechanism):
    """The LOGIN mechanism: user name and password as two responses."""

    name = "LOGIN"

    def __init__(self, secrets: Secrets) -> None:
        super().__init__(secrets)
        self._user: str | None = None

    def challenge(self) -> bytes:
        return b"Username:"

    def respond(self, data: bytes) -> bytes | Outcome:
        if self._user is None:
            self._user = _text(data)
            return b"Password:"
        if not self._user or not data:
            return self._outcome(self._user, "empty user name or password")
        return self._outcome(self._user, check_password(self.secrets, self._user, data))


class _ChallengeResponse(Mechanism):
    """Server-first mechanisms answered with ``<user> <hex digest>`` (the user may hold spaces)."""

    server_first = True

    def __init__(self, secrets: Secrets, challenge: str) -> None:
        super().__init__(secrets)
        self._challenge = challenge.encode()

    def challenge(self) -> bytes:
        return self._challenge

    def respond(self, data: bytes) -> Outcome:
        user, sep, digest = _text(data).rpartition(" ")
        if not sep or not user or not digest:
            return self._outcome(user, f"malformed {self.name} response")
        # Compared as bytes: compare_digest refuses str with non-ASCII characters.
        given = data.rpartition(b" ")[2].lower()
        expected = self.expected(user)
        if expected is None:
            hmac.compare_digest(_DUMMY.hex().encode(), given)
            return self._outcome(user, self._no_secret(user))
        ok = hmac.compare_digest(expected.hex().encode(), given)
        return self._outcome(user, None if ok else "wrong password")

    @abstractmethod
    def expected(self, user: str) -> bytes | None:
        """The right digest for ``user``, or None when there is no usable secret."""

    def _no_secret(self, user: str) -> str:
        known = any(u == user for _, u in self.secrets.server)
        return f"no secret usable with {self.name}" if known else "no such account"


class Cram(_ChallengeResponse):
    """CRAM-MD5 (RFC 2195) and its SHA variants: HMAC of the challenge, keyed by the password."""

    def __init__(self, secrets: Secrets, challenge: str, hash_name: str) -> None:
        super().__init__(secrets, challenge)
        self.hash_name = hash_name.lower()
        self.name = f"CRAM-{hash_name.upper()}"

    def expected(self, user: str) -> bytes | None:
        found = cram_digest(self.hash_name, self._challenge,
                            self.secrets.server_secret(self.hash_name, user),
                            self.secrets.server_secret(PLAIN, user))
        return None if found is None else found[1]


class Apop(_ChallengeResponse):
    """POP3's APOP (RFC 1939): MD5 of the greeting's timestamp and the password.

    It needs the password itself, so only ``plain`` secrets can be used.
    """

    name = "APOP"

    def expected(self, user: str) -> bytes | None:
        plain = self.secrets.server_secret(PLAIN, user)
        if plain is None:
            return None
        return hashlib.md5(self._challenge + plain.value).digest()


class SaslServer:
    """The mechanisms a secrets file supports, and new exchanges with them."""

    def __init__(self, secrets: Callable[[], Secrets], challenge_domain: str) -> None:
        self._secrets = secrets
        self.challenge_domain = challenge_domain

    @property
    def secrets(self) -> Secrets:
        return self._secrets()

    def mechanisms(self) -> list[str]:
        crams = cram_mechanisms(self.secrets.server_types())
        return [*crams, "PLAIN", "LOGIN"] if crams else []

    def start(self, name: str) -> Mechanism | None:
        """A new exchange with the named mechanism, or None if it is not offered."""
        name = name.upper()
        if name not in self.mechanisms():
            return None
        secrets = self.secrets
        if name == "PLAIN":
            return Plain(secrets)
        if name == "LOGIN":
            return Login(secrets)
        return Cram(secrets, make_challenge(self.challenge_domain), name[len("CRAM-"):])

    def apop_available(self) -> bool:
        return PLAIN in self.secrets.server_types()

    def apop(self, challenge: str) -> Apop:
        return Apop(self.secrets, challenge)

    def new_challenge(self) -> str:
        return make_challenge(self.challenge_domain)
