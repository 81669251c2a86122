"""Feeding the server's DATA scanner as a network would, for the property and fuzz tests."""

from __future__ import annotations

from collections.abc import Iterable

from emailrelay.smtp.dataphase import DataScanner


def scan_pieces(pieces: Iterable[bytes]) -> tuple[bytes, bytes] | None:
    """(content, what is left after the end marker), or None if the end never came."""
    scanner = DataScanner()
    buffer, content = b"", b""
    for piece in pieces:
        buffer += piece
        while buffer:
            segment = scanner.scan(buffer)
            if segment.consumed == 0:
                break
            content += segment.content
            buffer = buffer[segment.consumed:]
            if segment.finished:
                return content, buffer
    return None
