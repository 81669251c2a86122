"""Making untrusted text safe for logs, replies and envelope lines."""

from __future__ import annotations


def printable(text: str) -> str:
    """Escape control characters (and DEL) as ``\\xNN``; a backslash becomes ``\\\\``.

    Text that came from a filter, a verifier or the network goes through this before
    it reaches a log line, an SMTP reply or an envelope file.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F or 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code & 0xFF:02x}")
        else:
            out.append(ch)
    return "".join(out)
