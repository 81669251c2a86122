"""The ``Received`` trace header the server adds to each message (RFC 5321 4.4)."""

from __future__ import annotations

import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(t: float) -> str:
    """Local time as ``Sat, 1 Nov 2026 10:00:00 +0100`` (day without zero padding)."""
    tm = time.localtime(t)
    offset = tm.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (f"{_DAYS[tm.tm_wday]}, {tm.tm_mday} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {sign}{hours:02d}{minutes:02d}")


def _printable(text: str) -> str:
    return "".join(c if 32 < ord(c) < 127 else "-" for c in text.replace(" ", "-"))


def received_line(*, helo: str, peer_ip: str, domain: str, secure: bool, authenticated: bool,
                  cipher: str = "", tls_version: str = "", t: float | None = None) -> bytes:
    """E-MailRelay's form: ``with ESMTP`` plus ``S`` for TLS and ``A`` for AUTH (RFC 3848),
    then RFC 8314's ``tls`` clause naming the cipher suite, with the protocol version in
    a comment: ``with ESMTPS tls TLS_AES_256_GCM_SHA384 (TLSv1.3)``."""
    protocol = "ESMTP" + ("S" if secure else "") + ("A" if authenticated else "")
    tls = ""
    if secure and cipher:
        tls = " tls " + "".join(c for c in cipher.replace("-", "_") if c.isalnum() or c == "_")
        version = "".join(c for c in tls_version if c.isalnum() or c == ".")
        if version:
            tls += f" ({version})"
    peer = f" ([{peer_ip}])" if peer_ip else ""
    line = (f"Received: from {_printable(helo) or 'unknown'}{peer} by {domain} with "
            f"{protocol}{tls} ; {rfc5322_date(time.time() if t is None else t)}\r\n")
    return line.encode("ascii", "replace")
