"""Parsing of MAIL FROM and RCPT TO arguments (RFC 5321 section 4.1.2).

The error texts are E-MailRelay's, so that replies read the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ADDRESS = 512  # generous: RFC 5321 allows 64 + 1 + 255


class AddressError(ValueError):
    pass


@dataclass
class PathArgument:
    raw: str  # as the client wrote it between the angle brackets
    address: str  # the mailbox, source route removed, domain IDNA-encoded
    params: dict[str, str] = field(default_factory=dict)  # upper-case keys
    utf8_local: bool = False
    utf8_domain: bool = False


def _split_params(text: str) -> list[str]:
    return text.split()


def parse_path(line: str, keyword: str, *, strict: bool = True,
               alabels: bool = True) -> PathArgument:
    """Parse ``MAIL FROM:<a> params`` or ``RCPT TO:<a> params`` (the whole command)."""
    if any(c in line for c in "\0\r\n"):
        raise AddressError("invalid character in mailbox name")
    words = line.split(None, 1)
    rest = words[1] if len(words) > 1 else ""
    if not rest[: len(keyword)].upper() == keyword:
        raise AddressError("invalid mail-from command" if keyword == "FROM:"
                           else "invalid rcpt-to command")
    text = rest[len(keyword):].lstrip(" \t")
    if text.startswith("<"):
        close = _closing_bracket(text)
        if close < 0:
            raise AddressError("invalid angle brackets in mailbox name")
        raw = text[1:close]
        after = text[close + 1:]
        if after and after[0] not in " \t":
            raise AddressError("invalid angle brackets in mailbox name")
    elif strict:
        raise AddressError("missing angle brackets in mailbox name")
    else:
        raw, _, after = text.partition(" ")
    if len(raw) > MAX_ADDRESS:
        raise AddressError("mailbox name too long")
    address = _strip_source_route(raw)
    arg = PathArgument(raw=raw, address=address)
    _check_mailbox(arg, alabels)
    for item in _split_params(after):
        key, eq, value = item.partition("=")
        key_upper = key.upper()
        if eq and not value:
            raise AddressError(f"invalid {'mail-from' if keyword == 'FROM:' else 'rcpt-to'} "
                               "parameter")
        if key_upper == "SMTPUTF8" and eq:
            raise AddressError("invalid mail-from parameter")
        arg.params[key_upper] = value if eq else ""
    return arg


def _closing_bracket(text: str) -> int:
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
        i += 1
    if quoted:
        raise AddressError("invalid quoting")
    return -1


def _strip_source_route(raw: str) -> str:
    if raw.startswith("@"):
        colon = raw.rfind(":")
        if colon < 0:
            raise AddressError("invalid source route in mailbox name")
        return raw[colon + 1:]
    return raw


def _check_mailbox(arg: PathArgument, alabels: bool) -> None:
    address = arg.address
    if address == "":
        return
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        raise AddressError("invalid character in mailbox name")
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    arg.utf8_local = not local.isascii()
    arg.utf8_domain = not domain.isascii()
    if arg.utf8_domain and alabels:
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError("invalid character in mailbox name") from None
        arg.address = f"{local}@{ascii_domain}"
