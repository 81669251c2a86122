"""A verification request, its answer, and what every verifier provides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VerifierConfig:
    domain: str  # --domain: the local domain
    timeout: float  # --filter-timeout (0: none)


@dataclass(frozen=True)
class VerifyQuery:
    """What E-MailRelay tells a verifier about one address."""

    address: str  # from RCPT TO or VRFY
    mail_from: str  # the MAIL FROM address ("" for VRFY)
    client: str  # the client's "ip:port"
    domain: str
    auth_mechanism: str  # lower case, "none" when the client did not authenticate
    auth_name: str  # the authenticated user name, or ""
    command: str = "RCPT"  # or "VRFY"

    def fields(self) -> list[str]:
        return [self.address, self.mail_from, self.client, self.domain, self.auth_mechanism,
                self.auth_name]


@dataclass(frozen=True)
class VerifierStatus:
    recipient: str  # the address asked about
    valid: bool
    local: bool = False
    address: str = ""  # valid: the mailbox name (local) or the address to use (remote)
    full_name: str = ""  # local: the name VRFY shows
    temporary: bool = False  # invalid: 450 rather than 550
    response: str = ""  # invalid: the text for the client
    reason: str = ""  # invalid: the text for the log
    abort: bool = False  # drop the connection

    @classmethod
    def remote(cls, recipient: str, address: str | None = None) -> VerifierStatus:
        return cls(recipient, True, address=recipient if address is None else address)

    @classmethod
    def local_mailbox(cls, recipient: str, mailbox: str, full_name: str = "") -> VerifierStatus:
        return cls(recipient, True, local=True, address=mailbox, full_name=full_name)

    @classmethod
    def invalid(cls, recipient: str, response: str = "mailbox unavailable", reason: str = "",
                *, temporary: bool = False) -> VerifierStatus:
        return cls(recipient, False, temporary=temporary, response=response,
                   reason=reason or response)

    @classmethod
    def aborted(cls, recipient: str) -> VerifierStatus:
        return cls(recipient, False, response="aborted", abort=True)


class Verifier(Protocol):
    async def verify(self, query: VerifyQuery) -> VerifierStatus: ...

    def close(self) -> None: ...
