"""xtext (RFC 3461 section 4): '+' and hex for anything outside '!'..'~', '+' and '='."""

from __future__ import annotations

import re

_VALID = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_ESCAPE = re.compile(rb"\+([0-9A-Fa-f]{2})")


def encode(text: str) -> str:
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def decode(text: str) -> str:
    """Decode leniently: a malformed escape is kept as it is."""
    data = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]),
                       text.encode("utf-8", "surrogateescape"))
    return data.decode("utf-8", "surrogateescape")


def valid(text: str) -> bool:
    return _VALID.fullmatch(text) is not None
