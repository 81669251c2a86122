"""Bulk processing of the SMTP DATA phase (RFC 5321 section 4.5.2).

Works on whole buffers with ``bytes`` methods (``find``, ``replace``, ``count``),
never line by line in Python: the end marker is CRLF "." CRLF only, dot-stuffing is
removed, and bare CR or LF are made into CRLF so that what is stored (and later
forwarded) can never be read as an end marker by a laxer server downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

END = b"\r\n.\r\n"
HEADER_LINE_LIMIT = 998  # RFC 5322 section 2.1.1, not counting CRLF
HEADER_SCAN_LIMIT = 1 << 16  # header lines are checked in the first 64 KB only
# Anchored at line starts so that a search costs O(n), not O(n * limit).
_LONG_LINE = re.compile(rb"(?m)^[^\r\n]{%d}" % (HEADER_LINE_LIMIT + 1))


@dataclass
class Segment:
    """One step of the scan: content to store and whether the end marker was seen."""

    content: bytes | bytearray
    consumed: int  # bytes of the input buffer used up (including the end marker)
    finished: bool


class DataScanner:
    """Incremental scanner for one message's DATA phase."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.in_headers = True
        self.header_line_too_long = False
        self.bare_newlines = 0
        self.has_nul = False
        self.eight_bit = False
        self._header_tail = 0  # length of the partial header line seen so far
        self._header_scanned = 0

    def scan(self, buffer: bytes | bytearray) -> Segment:
        """Scan as much of ``buffer`` as can be decided now."""
        if self.at_line_start and buffer[:3] == b".\r\n"[: len(buffer)]:
            # The end marker, or possibly its beginning: decide when it is complete.
            return Segment(b"", 3, True) if len(buffer) >= 3 else Segment(b"", 0, False)
        end = buffer.find(END)
        if end >= 0:
            raw, consumed, finished = buffer[: end + 2], end + 5, True
        else:
            last = buffer.rfind(b"\r\n")
            if last >= 0:
                cut = last + 2
            elif len(buffer) > 1:
                cut = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
            else:
                return Segment(b"", 0, False)  # nothing decidable yet
            raw, consumed, finished = buffer[:cut], cut, False
        content = self._unstuff(raw)
        self.at_line_start = raw.endswith(b"\r\n")
        return Segment(self._inspect(content), consumed, finished)

    def _unstuff(self, raw: bytes | bytearray) -> bytes | bytearray:
        if self.at_line_start and raw.startswith(b"."):
            raw = raw[1:]
        if b"\r\n." in raw:
            raw = raw.replace(b"\r\n.", b"\r\n")
        return raw

    def _inspect(self, content: bytes | bytearray) -> bytes | bytearray:
        if not content:
            return content
        if not self.eight_bit and not content.isascii():
            self.eight_bit = True
        if not self.has_nul and b"\0" in content:
            self.has_nul = True
        crlf = content.count(b"\r\n")
        if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
            self.bare_newlines += 1
            content = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            content = content.replace(b"\n", b"\r\n")
        if self.in_headers:
            self._check_headers(content)
            self._header_scanned += len(content)
            if self._header_scanned > HEADER_SCAN_LIMIT:
                self.in_headers = False  # a header section this long: stop checking
        return content

    def _check_headers(self, content: bytes | bytearray) -> None:
        start = 0
        if self._header_tail == 0 and content.startswith(b"\r\n"):
            self.in_headers = False
            return
        blank = content.find(b"\r\n\r\n")
        region = content if blank < 0 else content[: blank + 2]
        first_newline = region.find(b"\r\n")
        head_len = len(region) if first_newline < 0 else first_newline
        if self._header_tail + head_len > HEADER_LINE_LIMIT:
            self.header_line_too_long = True
        start = 0 if first_newline < 0 else first_newline + 2
        if _LONG_LINE.search(region, start):
            self.header_line_too_long = True
        if blank >= 0:
            self.in_headers = False
        else:
            last = region.rfind(b"\r\n")
            self._header_tail = len(region) - (last + 2) if last >= 0 else (
                self._header_tail + len(region))
