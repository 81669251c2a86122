"""``emailrelay-passwd``: hash a password for an ``md5`` (or ``sha1``, ``sha256``) secret.

The password is read from the first line of standard input (or ``--password``); the
result goes to standard output, ready for the fourth field of a secrets file line such
as ``server md5 alice <result>``.  Options, messages and exit codes are E-MailRelay
2.6's: ``--hash=NONE`` prints the password xtext-encoded instead, ``--dotted`` prints
the old dotted-decimal form of an md5 secret, ``--base64`` takes the password base64
encoded.  ``--tls`` and ``--tls-config`` (E-MailRelay's undocumented choice of hashing
library) are accepted and change nothing.
"""

from __future__ import annotations

import base64
import binascii
import sys
import textwrap
from collections.abc import Sequence

from emailrelay.auth import hashstate
from emailrelay.options.help import option_entry
from emailrelay.options.parser import UsageError, tokenize
from emailrelay.options.table import Arity, Option
from emailrelay.util import xtext

PROGRAM = "emailrelay-passwd"
EXIT_OK, EXIT_ERROR = 0, 1
F, ONE = Arity.FLAG, Arity.ONE

OPTIONS: tuple[Option, ...] = (
    Option("help", "h", F, "", ("basic",), "show usage help"),
    Option("hash", "H", ONE, "function", ("basic",),
           "use the named hash function such as MD5 (SHA1, SHA256, or NONE for xtext)"),
    Option("password", "p", ONE, "pwd", ("more",), "defines the password on the command-line"),
    Option("base64", "b", F, "", ("more",), "interpret the password as base64-encoded"),
    Option("dotted", "d", F, "", ("more",),
           "use a dotted decimal format for backwards compatibility"),
    Option("verbose", "v", F, "", ("hidden",), "verbose"),
    Option("tls", "t", F, "", ("hidden",), "tls"),
    Option("tls-config", "T", ONE, "config", ("hidden",), "tls-config"),
)
BY_NAME = {o.name: o for o in OPTIONS}
BY_SHORT = {o.short: o for o in OPTIONS if o.short}

WARRANTY = ("This program comes with ABSOLUTELY NO WARRANTY.\n"
            "This is free software, and you are welcome to redistribute it\n"
            "under certain conditions. For details see the GNU General Public\n"
            "License, version 3 or later.\n")


class PasswdError(Exception):
    """Reported as ``emailrelay-passwd: exception: <text>``, as E-MailRelay does."""


def parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    raw, positional = tokenize(list(argv), BY_NAME, BY_SHORT)
    given: dict[str, str] = {}
    for r in raw:
        opt = BY_NAME.get(r.name)
        if opt is None:
            raise UsageError(f'invalid option: "--{r.name}"')
        if opt.arity is F and r.value not in (None, ""):
            raise UsageError(f'cannot give a value with "--{r.name}" ({r.value})')
        if opt.arity is ONE and r.value is None:
            raise UsageError(f'no value supplied for "--{r.name}"')
        if opt.arity is ONE and given.get(opt.name, r.value) != r.value:
            raise UsageError(f'duplicate use of "--{opt.name}"')
        given[opt.name] = r.value or ""
    return given, positional


def help_text(verbose: bool) -> str:
    levels = ("basic", "more", "hidden") if verbose else ("basic", "more")
    entries = [option_entry(o, width=26) for o in OPTIONS if o.areas[0] in levels]
    return "\n".join([f"usage: {PROGRAM} [<option> [<option> ...]]", "", *entries, "",
                      WARRANTY]) + "\n"


def hashed(password: bytes, function: str, dotted: bool) -> str:
    """The secrets-file value for a password (``function`` upper case, as given)."""
    if function == "NONE":
        return xtext.encode(password.decode("utf-8", "surrogateescape"))
    secret = hashstate.make_secret(password, function.lower())  # run() checked the name
    return hashstate.to_dotted(secret) if dotted else base64.b64encode(secret).decode("ascii")


def run(given: dict[str, str], positional: list[str], stdin: object) -> str:
    if positional:
        raise UsageError("too many command-line arguments (the password is read from the "
                         "standard input)")
    function = given.get("hash", "MD5").upper()
    if function != "NONE" and function.lower() not in hashstate.HASHES:
        raise PasswdError("invalid hash function")
    dotted = "dotted" in given
    if dotted and function != "MD5":
        raise PasswdError("--dotted only works for md5")
    if "password" in given:
        text = given["password"]
    else:
        line = stdin.readline() if stdin is not None else ""  # type: ignore[attr-defined]
        text = line.strip(" \t\n\r")
    if not text:
        raise ValueError("invalid password")
    password = text.encode("utf-8", "surrogateescape")
    if "base64" in given:
        try:
            password = base64.b64decode(password, validate=True)
        except (binascii.Error, ValueError):
            raise PasswdError("invalid base64 encoding") from None
    return hashed(password, function, dotted)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        given, positional = parse(sys.argv[1:] if argv is None else argv)
        if "help" in given:
            sys.stdout.write(help_text("verbose" in given))
            return EXIT_OK
        print(run(given, positional, sys.stdin))
        return EXIT_OK
    except UsageError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        if "too many" in str(e):
            print(f"usage: {PROGRAM}\n\n" + textwrap.indent(WARRANTY, "  "), end="",
                  file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except PasswdError as e:
        print(f"{PROGRAM}: exception: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
