"""Command-line and configuration-file parsing driven by the option table.

Grammar (as E-MailRelay):

* ``--name=value``, ``--name value`` (options taking a value), ``--name`` (flags and
  optional values), ``-x value``, ``-xvalue``, combined short flags ``-lvt``;
* one optional non-option argument: a configuration file holding one option per line
  without the dashes (``name value``), ``#`` comments and blank lines;
* ``@app`` at the start of a value means the directory of the executable;
* several instances in one process: ``--<name>-spool-dir`` declares instance
  ``<name>`` and ``--<name>-<option>`` sets an option for it.  Process-wide options
  count only on the first instance; options without a prefix go to the first instance.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emailrelay.options.table import BY_NAME, BY_SHORT, IMPLIES, Arity, Option


class UsageError(Exception):
    """A bad command line or configuration file (exit code 1).

    ``parse_error`` distinguishes grammar errors (``emailrelay: error: ...``) from
    semantic ones (``emailrelay: usage error: ...``), as E-MailRelay words them.
    """

    def __init__(self, message: str, *, parse_error: bool = False) -> None:
        super().__init__(message)
        self.parse_error = parse_error


Value = bool | str | list[str]
POSITIVE = ("", "yes", "y", "true", "t", "1", "on")
NEGATIVE = ("no", "n", "false", "f", "0", "off")
OFF = "\0off"  # a flag switched off with --flag=no


@dataclass(frozen=True)
class RawOption:
    """One option occurrence before it is assigned to an instance."""

    name: str  # as written, possibly with an instance prefix
    value: str | None
    source: str  # "command line" or "<file>:<line>"


@dataclass
class Settings:
    """The options of one instance, with table defaults for anything not given."""

    name: str = ""
    given: dict[str, Value] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.given

    def flag(self, name: str) -> bool:
        _check(name)
        return name in self.given

    def value(self, name: str) -> str | None:
        opt = _check(name)
        v = self.given.get(name)
        if isinstance(v, list):
            return v[-1] if v else opt.default
        if isinstance(v, str):
            return v
        return opt.default

    def values(self, name: str) -> list[str]:
        _check(name)
        v = self.given.get(name)
        if isinstance(v, list):
            return list(v)
        if isinstance(v, str):
            return [v]
        return []

    def int(self, name: str) -> int | None:
        v = self.value(name)
        return None if v is None or v == "" else int(v)

    def describe(self, name: str) -> str:
        """The option as the user would write it, for messages."""
        return f"--{self.name}-{name}" if self.name else f"--{name}"


def _check(name: str) -> Option:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no such option in the table: {name}") from None


@dataclass
class CommandLine:
    instances: list[Settings]
    config_file: str | None = None

    @property
    def process(self) -> Settings:
        """Process-wide options live on the first instance."""
        return self.instances[0]


def app_dir() -> str:
    return str(Path(sys.argv[0]).resolve().parent) if sys.argv and sys.argv[0] else os.getcwd()


def tokenize(argv: Sequence[str], by_name: Mapping[str, Option] = BY_NAME,
             by_short: Mapping[str, Option] = BY_SHORT) -> tuple[list[RawOption], list[str]]:
    """Split argv into option occurrences and non-option arguments.

    Another program's option table (``emailrelay-submit``) can be given instead of the
    relay's; instance prefixes apply to the relay's table only.
    """
    raw: list[RawOption] = []
    positional: list[str] = []
    i = 0
    src = "command line"
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            body = arg[2:]
            name, eq, value = body.partition("=")
            opt = _lookup(name) if by_name is BY_NAME else by_name.get(name)
            if eq:
                raw.append(RawOption(name, value, src))
            elif opt is not None and opt.takes_value:
                if i >= len(argv):
                    raise UsageError(f'no value supplied for "--{name}"', parse_error=True)
                raw.append(RawOption(name, argv[i], src))
                i += 1
            else:
                raw.append(RawOption(name, None, src))
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            j = 0
            while j < len(letters):
                letter = letters[j]
                opt = by_short.get(letter)
                if opt is None:
                    raise UsageError(f'invalid option: "-{letter}"', parse_error=True)
                j += 1
                if opt.takes_value:
                    if j < len(letters):
                        value = letters[j:]
                    elif i < len(argv):
                        value = argv[i]
                        i += 1
                    else:
                        raise UsageError(f"no value supplied for -{letter}", parse_error=True)
                    raw.append(RawOption(opt.name, value, src))
                    break
                raw.append(RawOption(opt.name, None, src))
        else:
            positional.append(arg)
    return raw, positional


def _lookup(name: str) -> Option | None:
    """Find the table entry for a possibly prefixed option name."""
    if name in BY_NAME:
        return BY_NAME[name]
    split = _split_prefix(name)
    return BY_NAME[split[1]] if split else None


def _split_prefix(name: str) -> tuple[str, str] | None:
    """``in-spool-dir`` -> ``("in", "spool-dir")``; the shortest prefix wins."""
    for pos, ch in enumerate(name):
        if ch == "-" and pos > 0 and name[pos + 1:] in BY_NAME:
            return name[:pos], name[pos + 1:]
    return None


def read_config_file(path: str) -> list[RawOption]:
    """Read a configuration file: ``name [value]`` per line, ``#`` comments."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read configuration file \"{path}\": {e.strerror}") from None
    raw: list[RawOption] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, _, value = text.partition(" ")
        if "\t" in name:
            name, _, rest = name.partition("\t")
            value = rest + (" " + value if value else "")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name.startswith("-"):
            raise UsageError(f"{path}:{number}: option names in a configuration file are "
                             f"written without dashes: {name}")
        raw.append(RawOption(name, value if value else None, f"{path}:{number}"))
    return raw


def parse(argv: Sequence[str], *, read_config: bool = True) -> CommandLine:
    """Parse the arguments after the program name into per-instance settings."""
    raw, positional = tokenize(argv)
    config_file = None
    if len(positional) > 1:
        raise UsageError("too many non-option arguments")
    if positional:
        config_file = positional[0]
        if read_config:
            # The command line comes last so that it can override the file, except that
            # repeatable options list the command line's values first, as E-MailRelay
            # does (so that a start-up script's --pid-file is the one used).
            def many(r: RawOption) -> bool:
                opt = _lookup(r.name)
                return opt is not None and opt.arity is Arity.MANY

            raw = ([r for r in raw if many(r)] + read_config_file(config_file)
                   + [r for r in raw if not many(r)])
    return build(raw, config_file)


def build(raw: Iterable[RawOption], config_file: str | None = None) -> CommandLine:
    raw = list(raw)
    # Declare instances in order of their <name>-spool-dir options.
    names: list[str] = []
    for r in raw:
        if r.name not in BY_NAME:
            split = _split_prefix(r.name)
            if split and split[1] == "spool-dir" and split[0] not in names:
                names.append(split[0])
    instances = [Settings(n) for n in names] or [Settings("")]
    by_name = {s.name: s for s in instances}
    first = instances[0]
    seen_in_source: dict[tuple[str, str, str], str] = {}

    for r in raw:
        if r.name in BY_NAME:
            prefix, opt = None, BY_NAME[r.name]
        else:
            split = _split_prefix(r.name)
            if split is None or split[0] not in by_name:
                raise UsageError(f'invalid option: "--{r.name}"' + _where(r), parse_error=True)
            prefix, opt = split[0], BY_NAME[split[1]]
        target = by_name[prefix] if prefix is not None else first
        if opt.process_wide and target is not first:
            continue  # ignored unless on the first instance, as E-MailRelay does
        value = _checked_value(opt, r)
        key = (target.name, opt.name, r.source.split(":")[0])
        if opt.arity in (Arity.ONE, Arity.FLAG, Arity.OPTIONAL):
            if key in seen_in_source and opt.arity is Arity.ONE:
                raise UsageError(f'duplicate use of "{target.describe(opt.name)}"' + _where(r),
                                 parse_error=True)
            seen_in_source[key] = r.source
        _assign(target, opt, value)
    for s in instances:
        _expand_implied(s)
    return CommandLine(instances, config_file)


def _where(r: RawOption) -> str:
    return "" if r.source == "command line" else f" ({r.source})"


def _checked_value(opt: Option, r: RawOption) -> str | None:
    value = r.value
    if opt.arity is Arity.FLAG and value is not None:
        if value.lower() in POSITIVE:
            return None
        if value.lower() in NEGATIVE:
            return OFF
        raise UsageError(f'cannot give a value with "--{r.name}" ({value})' + _where(r),
                         parse_error=True)
    if opt.takes_value and value is None:
        raise UsageError(f'no value supplied for "--{r.name}"' + _where(r), parse_error=True)
    if value is not None and value.startswith("@app"):
        value = app_dir() + value[4:]
    return value


def _assign(s: Settings, opt: Option, value: str | None) -> None:
    if opt.arity is Arity.FLAG and value == OFF:
        s.given.pop(opt.name, None)
    elif opt.arity is Arity.FLAG:
        s.given[opt.name] = True
    elif opt.arity is Arity.OPTIONAL:
        s.given[opt.name] = value if value is not None else True
    elif opt.arity is Arity.ONE:
        s.given[opt.name] = value or ""
    else:
        current = s.given.get(opt.name)
        items = current if isinstance(current, list) else []
        items.append(value or "")
        s.given[opt.name] = items


_NOT_A_PATH = re.compile(r"[a-z]+:")  # pam:, plain:<user>:<password>


def make_paths_absolute(cl: CommandLine, base: str) -> None:
    """Make file and directory options absolute against ``base``, the start-up directory.

    A daemon works in ``/``, so E-MailRelay does this for one; ``pam:`` and an inline
    ``plain:`` account are not paths and stay as they are.
    """
    def absolute(value: str) -> str:
        if not value or os.path.isabs(value) or _NOT_A_PATH.match(value):
            return value
        return os.path.join(base, value)

    for s in cl.instances:
        for name, value in s.given.items():
            if not BY_NAME[name].path:
                continue
            if isinstance(value, list):
                s.given[name] = [absolute(v) for v in value]
            elif isinstance(value, str):
                s.given[name] = absolute(value)


def _expand_implied(s: Settings) -> None:
    for shorthand, implied in IMPLIES.items():
        if shorthand not in s.given:
            continue
        for name, value in implied:
            if name in s.given and value == "$":
                raise UsageError(f"{s.describe(name)} cannot be used with --as-client or "
                                 "--as-proxy")
            if value == "$":
                s.given[name] = str(s.given[shorthand])
            elif name not in s.given:
                s.given[name] = True
