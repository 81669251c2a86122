"""Message content on the wire: CRLF endings, byte-stuffing, TOP, RFC 1939 sizes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emailrelay.pop.content import ContentEncoder, octet_count


def encode(data: bytes, body_lines: int | None = None, chunk: int = 7) -> bytes:
    encoder = ContentEncoder(body_lines)
    out = b"".join(encoder.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return out + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    """What a client does (RFC 1939 section 3): strip the end marker and one leading dot."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    assert body == b"" or body.endswith(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def crlf(data: bytes) -> bytes:
    """The content with CRLF line endings and a final one, as it should arrive."""
    text = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    return text if text == b"" or text.endswith(b"\r\n") else text + b"\r\n"


@pytest.mark.parametrize(("content", "wire"), [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"..x\n", b"...x\r\n.\r\n"),
    (b"lf only\nline 2\n", b"lf only\r\nline 2\r\n.\r\n"),
    (b"mixed\r\nlf\n.dot\n", b"mixed\r\nlf\r\n..dot\r\n.\r\n"),
    (b"bare\rcr\r\n", b"bare\rcr\r\n.\r\n"),
    (b"ends in cr\r", b"ends in cr\r\r\n.\r\n"),
])
def test_examples(content: bytes, wire: bytes) -> None:
    for chunk in (1, 2, 3, 1000):
        assert encode(content, chunk=chunk) == wire
    assert octet_count([content]) == len(crlf(content))


def test_top_examples() -> None:
    message = b"From: a\r\nSubject: b\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"
    assert encode(message, 0) == b"From: a\r\nSubject: b\r\n\r\n.\r\n"
    assert encode(message, 2, chunk=1) == (
        b"From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\n.\r\n")
    assert encode(message, 50) == encode(message)
    assert encode(b"Header: only\r\n", 3) == b"Header: only\r\n.\r\n"
    assert encode(b"H: x\n\nbody\n", 1, chunk=1) == b"H: x\r\n\r\nbody\r\n.\r\n"


def test_top_stops_reading_when_done() -> None:
    encoder = ContentEncoder(0)
    assert encoder.feed(b"H: 1\r\n\r\nbody\r\n") == b"H: 1\r\n\r\n"
    assert encoder.finished and encoder.feed(b"more\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_line_count_for_the_log() -> None:
    encoder = ContentEncoder()
    encoder.feed(b"a\r\nb\r\nc")
    encoder.finish()
    assert encoder.lines == 3


contents = st.binary(max_size=400) | st.lists(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"x", b"Subject: y", b""]),
    max_size=60).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(contents, st.integers(min_value=1, max_value=50))
def test_clients_get_the_content_back_and_the_size_is_right(data: bytes, chunk: int) -> None:
    wire = encode(data, chunk=chunk)
    assert unstuff(wire) == crlf(data)
    assert octet_count([data[i:i + chunk] for i in range(0, len(data), chunk)]) == len(crlf(data))
    assert b"\r\n.\r\n" not in wire[:-3] and not wire[:-3].startswith(b".\r\n")


@settings(max_examples=300, deadline=None)
@given(contents, st.integers(min_value=0, max_value=5), st.integers(min_value=1, max_value=20))
def test_top_is_a_prefix_of_the_whole_message(data: bytes, lines: int, chunk: int) -> None:
    top, whole = unstuff(encode(data, lines, chunk)), crlf(data)
    all_lines = [line + b"\r\n" for line in whole.split(b"\r\n")[:-1]]
    blank = all_lines.index(b"\r\n") if b"\r\n" in all_lines else len(all_lines)
    assert top == b"".join(all_lines[:blank + 1 + lines])
