"""Property tests: what the client's DATA encoder sends, the server's scanner reads back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emailrelay.smtp.client import DataEncoder
from tests.support.datascan import scan_pieces

# Content rich in the bytes that matter: dots, CR, LF, and lines that look like the end.
pieces = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.\r\n",
                                   b"a", b"..", b"x.y", b"\x80", b" "]), max_size=40)


def normalised(content: bytes) -> bytes:
    """What a message reads as after bare CR/LF became CRLF and a last CRLF was added."""
    text = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return text if text == b"" or text.endswith(b"\r\n") else text + b"\r\n"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def encode(content: bytes, cuts: list[int]) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.encode(part) for part in split(content, cuts)) + encoder.finish()


def scan(wire: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """Feed the wire bytes to the server's scanner in pieces: (content, left over)."""
    result = scan_pieces(split(wire, cuts))
    if result is None:
        raise AssertionError("the scanner never saw the end of the data")
    return result


@settings(max_examples=400)
@given(pieces, st.lists(st.integers(min_value=0), max_size=6),
       st.lists(st.integers(min_value=0), max_size=6))
def test_round_trip_through_the_server_scanner(parts: list[bytes], cuts: list[int],
                                               wire_cuts: list[int]) -> None:
    content = b"".join(parts)
    wire = encode(content, cuts)
    received, rest = scan(wire, wire_cuts)
    assert received == normalised(content)
    assert rest == b""


@settings(max_examples=300)
@given(pieces, st.lists(st.integers(min_value=0), max_size=6))
def test_nothing_but_the_last_line_can_end_the_data(parts: list[bytes],
                                                    cuts: list[int]) -> None:
    wire = encode(b"".join(parts), cuts)
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    assert b"\r\n.\r\n" not in body and not body.startswith(b".\r\n")
    # No bare CR or LF survives: a laxer server cannot find another end either.
    assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")


@given(pieces, st.lists(st.integers(min_value=0), max_size=6))
def test_chunking_does_not_change_the_output(parts: list[bytes], cuts: list[int]) -> None:
    content = b"".join(parts)
    assert encode(content, cuts) == encode(content, [])
