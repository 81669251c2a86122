"""The header section of a submitted message (RFC 5322 section 2.2).

Header lines are kept as text exactly as given (bytes that are not UTF-8 survive as
surrogates) and grouped into fields: the ``Name: value`` line and its folded
continuation lines.  Field names match case-insensitively and may be followed by
spaces before the colon (the obsolete syntax that E-MailRelay also accepts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from emailrelay.smtp.dataphase import HEADER_LINE_LIMIT

_FIELD = re.compile(r"([!-9;-~]+)[ \t]*:")


class MessageError(ValueError):
    """Input that does not make an RFC 5322 message (or a usable envelope)."""


def decode(line: bytes) -> str:
    return line.decode("utf-8", "surrogateescape")


def encode(line: str) -> bytes:
    return line.encode("utf-8", "surrogateescape")


@dataclass
class Field:
    lines: list[str]  # "Name: value" then its continuation lines

    @property
    def name(self) -> str:
        match = _FIELD.match(self.lines[0])
        assert match is not None
        return match.group(1)

    def is_one_of(self, names: Iterable[str]) -> bool:
        return self.name.lower() in {n.lower() for n in names}

    @property
    def body(self) -> str:
        """The unfolded value after the colon."""
        first = self.lines[0]
        return first[first.index(":") + 1:] + "".join(self.lines[1:])


@dataclass
class HeaderSection:
    fields: list[Field] = field(default_factory=list)

    def add_lines(self, lines: list[str], where: Callable[[int], str]) -> None:
        """Append header lines, checking each; ``where(i)`` names line ``i`` in errors."""
        for i, line in enumerate(lines):
            problem = line_problem(line)
            if problem:
                raise MessageError(f"not an RFC 5322 message: {where(i)} {problem}")
            if line[:1] in (" ", "\t"):
                if not self.fields:
                    raise MessageError(f"not an RFC 5322 message: {where(i)} is a folded "
                                       "continuation line with no header field before it")
                self.fields[-1].lines.append(line)
            elif _FIELD.match(line):
                self.fields.append(Field([line]))
            else:
                hint = (" (use --body for input that has no headers)" if not self.fields
                        else "")
                raise MessageError(f"not an RFC 5322 message: {where(i)} is not a header "
                                   f"field (\"Name: value\"): \"{_printable(line)}\"{hint}")

    def find(self, *names: str) -> list[Field]:
        return [f for f in self.fields if f.is_one_of(names)]

    def has(self, name: str) -> bool:
        return bool(self.find(name))

    def without(self, *names: str) -> HeaderSection:
        return HeaderSection([f for f in self.fields if not f.is_one_of(names)])

    def remove(self, *names: str) -> None:
        self.fields = self.without(*names).fields

    def replaced(self, name: str, line: str) -> HeaderSection:
        """A copy with the fields called ``name`` made into one ``line`` where the first was."""
        out: list[Field] = []
        for f in self.fields:
            if not f.is_one_of([name]):
                out.append(f)
            elif not any(o.is_one_of([name]) for o in out):
                out.append(Field([line]))
        return HeaderSection(out)

    def insert_top(self, line: str) -> None:
        self.fields.insert(0, Field([line]))

    def lines(self) -> list[str]:
        return [line for f in self.fields for line in f.lines]


def line_problem(line: str) -> str | None:
    if "\0" in line:
        return "contains a NUL character"
    if "\r" in line or "\n" in line:
        return "contains a bare CR or LF"
    if len(encode(line)) > HEADER_LINE_LIMIT:
        return f"is longer than {HEADER_LINE_LIMIT} characters"
    return None


def _printable(text: str, limit: int = 60) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def read_header_lines(stream: BinaryIO, tty: bool, name: str) -> list[str]:
    """Read lines up to the blank line that ends the header section (or the end).

    Lines longer than RFC 5322 allows are refused without reading them whole. On a
    terminal a line holding a single "." ends the message, as it ends the body.
    """
    lines: list[str] = []
    while True:
        raw = stream.readline(HEADER_LINE_LIMIT + 3)
        if not raw:
            return lines
        line = raw.removesuffix(b"\n").removesuffix(b"\r")
        if not raw.endswith(b"\n") and len(raw) == HEADER_LINE_LIMIT + 3:
            raise MessageError(f"not an RFC 5322 message: line {len(lines) + 1} of {name} "
                               f"is longer than {HEADER_LINE_LIMIT} characters")
        if not line or (tty and line == b"."):
            return lines
        lines.append(decode(line))


class LineEndings:
    """Streams body text so that every line ends with CRLF.

    Bare CR and bare LF become CRLF (as the SMTP server stores them), and a last line
    without an ending gets one.  A NUL byte is refused: RFC 5322 does not allow it.
    """

    def __init__(self) -> None:
        self.eight_bit = False
        self._pending_cr = False
        self._ends_line = True

    def feed(self, data: bytes) -> bytes:
        if b"\0" in data:
            raise MessageError("not an RFC 5322 message: the body contains a NUL character")
        if not self.eight_bit and not data.isascii():
            self.eight_bit = True
        if self._pending_cr:
            data = b"\r" + data
        self._pending_cr = data.endswith(b"\r")
        if self._pending_cr:
            data = data[:-1]
        out = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if out:
            self._ends_line = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        if self._pending_cr or not self._ends_line:
            self._pending_cr, self._ends_line = False, True
            return b"\r\n"
        return b""
