"""``account:``: recipients are the system's user accounts.

``user@<domain>`` is a local mailbox when ``<domain>`` is ``--domain`` (in any case)
and ``user`` is an account whose uid is in the range (default 1000-32767); so is a
bare ``postmaster``.  Options (``;``-separated): a uid range such as ``1000-1002``,
``lowercase`` (mailbox names in lower case), ``remote`` (valid accounts are forwarded,
not delivered locally), ``check`` (unknown addresses are forwarded, not rejected).
As in E-MailRelay, a token of up to three letters counts as the first of ``l``, ``r``
and ``c`` that it holds (so ``l;r`` sets two options, ``lr`` only one).
"""

from __future__ import annotations

import asyncio
import pwd
from dataclasses import dataclass

from emailrelay.verify.base import VerifierConfig, VerifierStatus, VerifyQuery

DEFAULT_RANGE = (1000, 32767)


@dataclass(frozen=True)
class AccountOptions:
    uid_range: tuple[int, int] = DEFAULT_RANGE
    lowercase: bool = False
    remote: bool = False
    check: bool = False


def _range(text: str) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    try:
        first = int(low)
        last = int(high) if dash else first
    except ValueError:
        raise ValueError(f"invalid uid range: {text}") from None
    if first > last or first < 0:
        raise ValueError(f"invalid uid range: {text}")
    return first, last


def parse_options(text: str) -> AccountOptions:
    uid_range, lower, remote, check = DEFAULT_RANGE, False, False, False
    for token in (t.strip() for t in text.split(";")):
        short = len(token) <= 3
        if token[:1].isdigit():
            uid_range = _range(token)
        elif token == "lowercase" or (short and "l" in token):
            lower = True
        elif token == "remote" or (short and "r" in token):
            remote = True
        elif token == "check" or (short and "c" in token):
            check = True
    return AccountOptions(uid_range, lower, remote, check)


def _dequote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


class AccountVerifier:
    def __init__(self, options: str, config: VerifierConfig) -> None:
        self.options = parse_options(options)
        self.config = config

    async def verify(self, query: VerifyQuery) -> VerifierStatus:
        return await asyncio.to_thread(self.check, query.address)

    def check(self, recipient: str) -> VerifierStatus:
        address = _dequote(recipient)
        user, at, domain = address.rpartition("@")
        user, domain = (_dequote(user), domain) if at else (address, "")
        if user == "postmaster" and not domain:
            return VerifierStatus.local_mailbox(recipient, "postmaster")
        account, reason = self._lookup(user, domain)
        o = self.options
        if account is not None:
            if o.remote:
                return VerifierStatus.remote(recipient)
            return VerifierStatus.local_mailbox(recipient,
                                                account.lower() if o.lowercase else account)
        if o.check:
            return VerifierStatus.remote(recipient)
        return VerifierStatus.invalid(recipient, "rejected", reason)

    def _lookup(self, user: str, domain: str) -> tuple[str | None, str]:
        if domain.lower() != self.config.domain.lower():
            return None, f"[{domain}] does not match [{self.config.domain}]"
        entry = _getpwnam(user)
        if entry is None and user.isascii() and user.isprintable():
            entry = _getpwnam(user.lower())
        if entry is None:
            return None, f"[{user}] is not a valid account name"
        low, high = self.options.uid_range
        if not low <= entry.pw_uid <= high:
            return None, f"uid {entry.pw_uid} is not in the range {low}-{high}"
        return entry.pw_name, ""

    def close(self) -> None:
        pass


def _getpwnam(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name) if name and "\0" not in name else None
    except (KeyError, UnicodeEncodeError):
        return None
