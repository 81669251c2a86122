"""Envelope addresses: taken from From:, Sender:, To:, Cc: and Bcc: headers, and checked.

Header values are parsed with the standard library's RFC 5322 parser
(:mod:`email.headerregistry`); an address list it finds defects in is refused rather
than guessed at.  Domains are IDNA-encoded for the envelope, local parts are kept
(UTF-8 local parts mark the envelope as needing SMTPUTF8).
"""

from __future__ import annotations

from dataclasses import dataclass
from email import errors, policy
from email.headerregistry import Address

from emailrelay.submit.headers import Field, MessageError

# Defects that do not make an address unusable.
_HARMLESS = (errors.NonASCIILocalPartDefect, errors.ObsoleteHeaderDefect)


@dataclass(frozen=True)
class Mailbox:
    address: str  # for the envelope: local@domain with an IDNA-encoded domain
    display: str  # for a header: "Name" <local@domain>, or the bare address


def parse_field(header: Field, where: str) -> list[Mailbox]:
    """The mailboxes of an address-list header field (groups are flattened)."""
    try:
        parsed = policy.default.header_factory(header.name, header.body.strip())
        defects = [d for d in parsed.defects if not isinstance(d, _HARMLESS)]
        addresses: tuple[Address, ...] = parsed.addresses
    except Exception as e:  # the parser raises odd errors on some malformed input
        defects, addresses = [e], ()
    if defects:
        raise MessageError(f"invalid address in the {header.name}: header ({where}): "
                           f"\"{header.body.strip()}\": {defects[0]}")
    return [_mailbox(a, header.name, where) for a in addresses]


def _mailbox(address: Address, header: str, where: str) -> Mailbox:
    domain = address.domain
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise MessageError(f"invalid domain in the {header}: header ({where}): "
                               f"\"{address.domain}\"") from None
    envelope = f"{address.username}@{domain}"
    name = address.display_name
    simple = name and name.isprintable() and name.isascii() and not any(c in name for c in '"\\')
    return Mailbox(envelope, f"\"{name}\" <{address.addr_spec}>" if simple else address.addr_spec)


def check(address: str, role: str) -> None:
    """Refuse an envelope address that would not survive SMTP."""
    problem = _problem(address)
    if problem:
        shown = address.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise MessageError(f"invalid {role} address \"{shown}\": {problem}")


def _problem(address: str) -> str | None:
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if not address:
        return "it is empty"
    if address.startswith("@") or address.endswith("@"):
        return "a part is missing around the @"
    if any(c.isspace() or not c.isprintable() for c in address):
        return "it contains a space or a control character"
    return None


def utf8_local_part(address: str) -> bool:
    local = address.rpartition("@")[0] if "@" in address else address
    return not local.isascii()
