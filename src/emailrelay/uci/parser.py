"""Reading OpenWrt UCI configuration files (``/etc/config/<package>``).

Written by hand because no maintained Python library parses UCI text: ``pyuci`` binds
the C library libuci (which Debian and PyPI do not ship), netjsonconfig's OpenWrt
parser deletes every quote character and reports no errors, and the Salt and ubus
packages talk to a running router instead of reading a file.

The grammar is libuci's:

* commands ``package <name>``, ``config <type> [<name>]``, ``option <name> [<value>]``
  and ``list <name> <value>`` (or their first letters), one per line or separated by
  ``;``;
* words are separated by blanks; ``'...'`` quotes literally, ``"..."`` quotes with
  backslash escapes, a backslash outside single quotes takes the next character
  literally, and a backslash at the end of a line continues the word on the next line;
  quoted text may span lines and adjacent quoted parts join into one word;
* ``#`` outside quotes starts a comment that runs to the end of the line;
* section and option names are letters, digits and ``_``;
* a second ``config`` with the same name adds to the first section, an ``option`` set
  twice keeps the last value (an empty value removes it), and ``list`` appends (turning an
  earlier ``option`` of that name into the first item).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from emailrelay.options.parser import UsageError

_NAME = re.compile(r"[A-Za-z0-9_]+")
_TYPE = re.compile(r"[!-~]+")
_COMMANDS = {"package": "package", "p": "package", "config": "config", "c": "config",
             "option": "option", "o": "option", "list": "list", "l": "list"}


class UciError(UsageError):
    """A UCI file that cannot be read; the message names the file and line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, parse_error=True)


@dataclass
class UciValue:
    values: list[str]
    is_list: bool
    line: int  # where it was last set


@dataclass
class Section:
    type: str
    name: str  # "" for an anonymous section
    type_index: int  # position among the sections of its type, for "@type[n]"
    line: int
    options: dict[str, UciValue] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The section as UCI names it: its name, or ``@type[n]`` when anonymous."""
        return self.name or f"@{self.type}[{self.type_index}]"


@dataclass
class UciFile:
    path: str
    package: str | None
    sections: list[Section]

    def of_type(self, section_type: str) -> list[Section]:
        return [s for s in self.sections if s.type == section_type]


def read(path: str) -> UciFile:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise UciError(f"cannot read UCI file \"{path}\": {e.strerror}") from None
    return parse(text, path)


def parse(text: str, path: str = "<uci>") -> UciFile:
    result = UciFile(path, None, [])
    current: Section | None = None
    for line, words in _commands(text, path):
        command = _COMMANDS.get(words[0])

        def fail(reason: str, line: int = line) -> UciError:
            return UciError(f"{path}:{line}: {reason}")

        if command is None:
            raise fail(f"invalid command \"{words[0]}\" (expected config, option, list or "
                       "package)")
        args = words[1:]
        if command == "package":
            _arity(args, 1, 1, fail, "package without a name")
            result.package = args[0]
        elif command == "config":
            _arity(args, 1, 2, fail, "config without a type")
            current = _open_section(result, args, line, fail)
        else:
            if current is None:
                raise fail(f"{command} before the first config section")
            _arity(args, 1, 2, fail, f"{command} without a name")
            if not _NAME.fullmatch(args[0]):
                raise fail(f"invalid character in the {command} name \"{args[0]}\"")
            _set(current, command, args[0], args[1] if len(args) > 1 else "", line)
    return result


def _arity(args: list[str], low: int, high: int, fail: Callable[..., UciError],
           missing: str) -> None:
    if len(args) < low or not args[0]:
        raise fail(missing)
    if len(args) > high:
        raise fail(f"too many arguments (\"{args[high]}\"): quote values that hold spaces")


def _open_section(result: UciFile, args: list[str], line: int,
                  fail: Callable[..., UciError]) -> Section:
    section_type = args[0]
    name = args[1] if len(args) > 1 else ""
    if not _TYPE.fullmatch(section_type):
        raise fail(f"invalid character in the section type \"{section_type}\"")
    if name and not _NAME.fullmatch(name):
        raise fail(f"invalid character in the section name \"{name}\"")
    for existing in result.sections:
        if name and existing.name == name:
            if existing.type != section_type:
                raise fail(f"section \"{name}\" is already of type \"{existing.type}\"")
            return existing
    section = Section(section_type, name, len(result.of_type(section_type)), line)
    result.sections.append(section)
    return section


def _set(section: Section, command: str, name: str, value: str, line: int) -> None:
    existing = section.options.get(name)
    if command == "option":
        if value:
            section.options[name] = UciValue([value], False, line)
        else:
            section.options.pop(name, None)
    elif existing is None:
        section.options[name] = UciValue([value], True, line)
    else:
        existing.values.append(value)
        existing.is_list, existing.line = True, line


_SPACE = " \t\r\f\v"  # what C's isspace() in libuci skips, newline apart


def _commands(text: str, path: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, words) for each command."""
    i, n, line = 0, len(text), 1
    words: list[str] = []
    start = 1
    while i < n:
        c = text[i]
        if c == "\n" or c == ";":
            if words:
                yield start, words
                words = []
            line += c == "\n"
            i += 1
        elif c in _SPACE:
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            if not words:
                start = line
            word, i, line = _word(text, i, line, path)
            words.append(word)
    if words:
        yield start, words


def _word(text: str, i: int, line: int, path: str) -> tuple[str, int, int]:
    """Read one word starting at ``text[i]``; return it, the next index and line."""
    n = len(text)
    out: list[str] = []
    while i < n:
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise UciError(f"{path}:{line}: unterminated ' quote")
            part = text[i + 1:end]
            out.append(part)
            line += part.count("\n")
            i = end + 1
        elif c == '"':
            i, line = _double_quoted(text, i + 1, line, out, path)
        elif c == "\\":
            i, line = _backslash(text, i, line, out)
        elif c in _SPACE or c in "\n#;":  # not str.isspace(): it knows \x1c and friends
            break
        else:
            out.append(c)
            i += 1
    return "".join(out), i, line


def _double_quoted(text: str, i: int, line: int, out: list[str], path: str) -> tuple[int, int]:
    opened = line
    while i < len(text):
        c = text[i]
        if c == '"':
            return i + 1, line
        if c == "\\":
            i, line = _backslash(text, i, line, out)
            continue
        out.append(c)
        line += c == "\n"
        i += 1
    raise UciError(f"{path}:{opened}: unterminated \" quote")


def _backslash(text: str, i: int, line: int, out: list[str]) -> tuple[int, int]:
    """A backslash: the line continues, or the next character counts literally."""
    following = text[i + 1:i + 3]
    if following.startswith("\n"):
        return i + 2, line + 1
    if following == "\r\n":
        return i + 3, line + 1
    if following:
        out.append(following[0])
        return i + 2, line
    return i + 1, line
