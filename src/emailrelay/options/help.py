"""``--help`` and ``--version`` text, generated from the option table."""

from __future__ import annotations

import ssl
import textwrap

from emailrelay import COMPATIBLE_WITH, __version__
from emailrelay.options.table import AREA_TITLES, OPTIONS, Arity, Option

USAGE = "usage: emailrelay [<option> [<option> ...]] [<config-file>]"
LICENSE = ("License GPLv3+: GNU GPL version 3 or later <http://gnu.org/licenses/gpl.html>",
           "This is free software: you are free to change and redistribute it.",
           "There is NO WARRANTY, to the extent permitted by law.")


def _signature(opt: Option) -> str:
    short = f"-{opt.short}, " if opt.short else "    "
    if opt.arity is Arity.OPTIONAL:
        arg = f"[=<{opt.metavar}>]"
    elif opt.takes_value:
        arg = f" <{opt.metavar}>" if opt.metavar else " <value>"
    else:
        arg = ""
    return f"  {short}--{opt.name}{arg}"


def _entry(opt: Option, width: int = 38) -> str:
    text = opt.help
    if opt.default is not None and "default" not in text:
        text += f" (default: {opt.default})"
    sig = _signature(opt)
    lines = textwrap.wrap(text, 79 - width) or [""]
    head = [sig, " " * width + lines[0]] if len(sig) >= width else [sig.ljust(width) + lines[0]]
    return "\n".join(head + [" " * width + line for line in lines[1:]])


def help_text(verbose: bool) -> str:
    out = [USAGE, ""]
    if not verbose:
        out += [_entry(o) for o in OPTIONS if "basic" in o.areas]
        out += ["", 'For complete usage information run "emailrelay --help --verbose"']
        return "\n".join(out) + "\n"
    for area, title in AREA_TITLES.items():
        members = [o for o in OPTIONS if o.areas[0] == area]
        if not members:
            continue
        out += [f"{title}:"] + [_entry(o) for o in members] + [""]
    return "\n".join(out)


def version_text(verbose: bool) -> str:
    lines = [f"E-MailRelay V{COMPATIBLE_WITH} (emailrelay for Python {__version__})"]
    if verbose:
        lines += [
            "",
            f"TLS library: {ssl.OPENSSL_VERSION} (Python ssl module)",
            "Threading: asyncio event loop with a thread pool for disk synchronisation",
            "Unix domain sockets: enabled",
        ]
    lines += ["", *LICENSE]
    return "\n".join(lines) + "\n"
