"""Message content as POP3 sends it (RFC 1939 section 3): CRLF line endings,
byte-stuffed, ended by a line holding ".".

Stored content normally has CRLF endings already (the SMTP server stores it so), but
files put in the spool by other programs may use bare LF; both are sent as CRLF, and
a last line without an ending gets one.  Sizes count the octets sent before
byte-stuffing and without the final ".", which is what clients compare with.
Everything here works on chunks, so a message of any size streams in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable


def _normalise(data: bytes) -> bytes:
    """Bare LF to CRLF (two plain replacements are much faster than a regular expression)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # the usual case: already CRLF
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ContentEncoder:
    """Turns content chunks into the bytes to send.

    With ``body_lines`` (the TOP command) only the header, the blank line and that
    many body lines come out; :attr:`finished` then says that reading can stop.
    """

    def __init__(self, body_lines: int | None = None) -> None:
        self._limit = body_lines
        self._in_header = True
        self._partial = 0  # length of the current line so far, across chunks
        self._held = b""  # a CR at the end of a chunk, until we know if LF follows
        self._line_start = True
        self.finished = False
        self.lines = 0  # content lines produced, for the protocol log

    def feed(self, chunk: bytes) -> bytes:
        if self.finished:
            return b""
        data = self._held + chunk
        self._held = b""
        if data.endswith(b"\r"):
            data, self._held = data[:-1], b"\r"
        data = _normalise(data)
        if self._limit is not None:
            data = self._cut(data)
        return self._stuff(data)

    def _cut(self, data: bytes) -> bytes:
        """Keep what TOP sends of ``data`` (CRLF-normalised)."""
        assert self._limit is not None
        pos = 0
        while True:
            end = data.find(b"\r\n", pos)
            if end < 0:
                self._partial += len(data) - pos
                return data
            empty = end == pos and self._partial == 0
            self._partial = 0
            pos = end + 2
            if self._in_header:
                self._in_header = not empty
                done = empty and self._limit == 0
            else:
                self._limit -= 1
                done = self._limit == 0
            if done:
                self.finished = True
                self._held = b""
                return data[:pos]

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._line_start = data.endswith(b"\n")
        self.lines += data.count(b"\r\n")
        return data

    def finish(self) -> bytes:
        """The rest: a final line ending if one is missing, then the terminating ".".
        """
        tail, self._held = self._held, b""
        end = b"\r\n" if tail or not self._line_start else b""
        if end:
            self.lines += 1
        self.finished = True
        return tail + end + b".\r\n"


def octet_count(chunks: Iterable[bytes]) -> int:
    """The RFC 1939 size of content given as chunks: CRLF endings, no byte-stuffing."""
    size = 0
    previous_cr = False
    last = b""
    for chunk in chunks:
        if not chunk:
            continue
        bare = chunk.count(b"\n") - chunk.count(b"\r\n")
        if previous_cr and chunk.startswith(b"\n"):
            bare -= 1  # a CRLF split between chunks
        size += len(chunk) + bare
        previous_cr = chunk.endswith(b"\r")
        last = chunk[-1:]
    if size and last != b"\n":
        size += 2
    return size
