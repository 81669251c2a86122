"""The command line of ``emailrelay-submit``: E-MailRelay 2.6's options and letters.

It shares the relay's grammar (:func:`emailrelay.options.parser.tokenize`): long options
with ``=`` or a separate value, short letters that can be combined (``-dtFN``), and
non-option arguments, which are envelope recipients here.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from emailrelay.options.help import option_entry
from emailrelay.options.parser import NEGATIVE, POSITIVE, UsageError, app_dir, tokenize
from emailrelay.options.table import Arity, Option

F, ONE, MANY = Arity.FLAG, Arity.ONE, Arity.MANY
DEFAULT_SPOOL_DIR = "/var/spool/emailrelay"


def _o(name: str, short: str | None, arity: Arity, metavar: str, level: str,
       help: str) -> Option:
    return Option(name, short, arity, metavar, (level,), help)


# "basic" options are in the brief --help; "more" ones only in --help --verbose.
OPTIONS: tuple[Option, ...] = (
    _o("help", "h", F, "", "basic", "Show this help and exit; with --verbose show every option."),
    _o("verbose", "v", F, "", "basic",
       "Print the full path of each new content file (and every option with --help)."),
    _o("spool-dir", "s", ONE, "dir", "basic",
       f"The spool directory to put the message in (default: {DEFAULT_SPOOL_DIR})."),
    _o("input-file", "x", ONE, "file", "basic",
       "Read the message from this file instead of standard input."),
    _o("from", "f", ONE, "envelope-from-address", "basic",
       "The envelope sender (default: the address in the From: or Sender: header, "
       "else \"anonymous\")."),
    _o("to", None, MANY, "envelope-to-address", "more",
       "Add envelope recipients (comma-separated, repeatable; arguments count too). "
       "Without any, the To:, Cc: and Bcc: headers give them."),
    _o("content-to", "t", F, "", "more",
       "Add a To: header listing the envelope recipients, replacing the To:, Cc: and Bcc: "
       "headers."),
    _o("content-from", "F", F, "", "more",
       "Add a From: header with the envelope sender, replacing the From: and Sender: "
       "headers."),
    _o("bcc-split", "b", F, "", "more",
       "With more than one Bcc: recipient, submit one message for the To: and Cc: "
       "recipients and one for each Bcc: recipient."),
    _o("content-date", "d", F, "", "more", "Add a Date: header if there is none."),
    _o("content-message-id", "I", ONE, "domain-part", "more",
       "Add a Message-ID: header with this domain part if there is none."),
    _o("copy", "c", F, "", "more",
       "Copy the envelope into every subdirectory of the spool directory (a mailbox each, "
       "as for --pop-by-name) instead of leaving it to be forwarded."),
    _o("filename", "n", F, "", "more", "Print the name of each new content file."),
    _o("content", "C", MANY, "base64", "more",
       "Add a line of content, base64 encoded: header lines, then an empty value for the "
       "blank line, then body lines (read before standard input)."),
    _o("no-stdin", "N", F, "", "more", "Do not read standard input."),
    _o("body", "B", F, "", "more",
       "Read standard input or --input-file as body text, without headers."),
    _o("auth", "a", ONE, "name", "more",
       "Set the envelope's authentication value (the user the message counts as from)."),
    _o("from-auth-in", "i", ONE, "name", "more",
       "Set the envelope's from-auth-in value (MAIL FROM AUTH= as received); empty for <>."),
    _o("from-auth-out", "o", ONE, "name", "more",
       "Set the envelope's from-auth-out value (MAIL FROM AUTH= when forwarding); empty "
       "for <>."),
    _o("debug", None, F, "", "more",
       "Log each step on standard error; twice for more detail."),
    _o("version", "V", F, "", "more", "Print the version and exit."),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
BY_SHORT: dict[str, Option] = {o.short: o for o in OPTIONS if o.short}


@dataclass
class SubmitArgs:
    """The parsed command line."""

    given: dict[str, list[str]] = field(default_factory=dict)  # option -> values
    recipients: list[str] = field(default_factory=list)  # --to values and arguments

    def flag(self, name: str) -> bool:
        return name in self.given

    def count(self, name: str) -> int:
        return len(self.given.get(name, []))

    def value(self, name: str) -> str | None:
        values = self.given.get(name)
        return values[-1] if values else None

    def values(self, name: str) -> list[str]:
        return list(self.given.get(name, []))

    @property
    def spool_dir(self) -> str:
        return _app(self.value("spool-dir") or DEFAULT_SPOOL_DIR)

    @property
    def input_file(self) -> str | None:
        value = self.value("input-file")
        return _app(value) if value else None

    def content_values(self) -> list[str]:
        """The --content values, each split at commas as E-MailRelay does."""
        return [item for value in self.values("content") for item in value.split(",")]


def _app(path: str) -> str:
    return app_dir() + path[4:] if path.startswith("@app") else path


def parse(argv: list[str]) -> SubmitArgs:
    raw, positional = tokenize(argv, BY_NAME, BY_SHORT)
    args = SubmitArgs()
    for r in raw:
        opt = BY_NAME.get(r.name)
        if opt is None:
            raise UsageError(f'invalid option: "--{r.name}"', parse_error=True)
        value = r.value
        if opt.arity is F:
            if value is not None and value.lower() in NEGATIVE:
                args.given.pop(opt.name, None)
                continue
            if value is not None and value.lower() not in POSITIVE:
                raise UsageError(f'cannot give a value with "--{r.name}" ({value})',
                                 parse_error=True)
            value = ""
        elif value is None:
            raise UsageError(f'no value supplied for "--{r.name}"', parse_error=True)
        previous = args.given.get(opt.name)
        if opt.arity is ONE and previous and previous[-1] != value:
            raise UsageError(f'duplicate use of "--{opt.name}"', parse_error=True)
        args.given.setdefault(opt.name, []).append(value)
    for value in args.values("to"):
        args.recipients.extend(item.strip() for item in value.split(",") if item.strip())
    args.recipients.extend(positional)
    # A leading backslash lets an address start with a dash, as in E-MailRelay.
    args.recipients = [r[1:] if r.startswith("\\") else r for r in args.recipients]
    return args


USAGE = ("usage: emailrelay-submit [<option> ...] "
         "[<envelope-to-address> ...]")


def help_text(verbose: bool) -> str:
    shown = [o for o in OPTIONS if verbose or o.areas[0] == "basic"]
    lines = [USAGE, "", *(option_entry(o) for o in shown), "",
             "The message is read from standard input (or --input-file): header lines, a "
             "blank line, then the body. From a terminal, end it with a line holding a "
             "single \".\" or with ^D."]
    if not verbose:
        lines += ["", 'For more options use "--help --verbose".']
    return "\n".join(textwrap.fill(line, 79) if not line.startswith(" ") else line
                     for line in lines) + "\n"
