"""``--help`` and ``--version`` text, generated from the option table."""

from __future__ import annotations

import ssl
import textwrap

from emailrelay import COMPATIBLE_WITH, __version__
from emailrelay.options.table import AREA_TITLES, OPTIONS, Arity, Option

BANNER = f"E-MailRelay V{COMPATIBLE_WITH}"  # E-MailRelay's first line of --help and --version
USAGE = "usage: emailrelay [<option> [<option> ...]] [<config-file>]"
WARRANTY = ("This program comes with ABSOLUTELY NO WARRANTY.",
            "This is free software, and you are welcome to redistribute it under the",
            "terms of the GNU General Public License, version 3 or later.")


def _signature(opt: Option) -> str:
    short = f"-{opt.short}, " if opt.short else "    "
    if opt.arity is Arity.OPTIONAL:
        arg = f"[=<{opt.metavar}>]"
    elif opt.takes_value:
        arg = f" <{opt.metavar}>" if opt.metavar else " <value>"
    else:
        arg = ""
    return f"  {short}--{opt.name}{arg}"


def option_entry(opt: Option, width: int = 38) -> str:
    text = opt.help
    if opt.default is not None and "default" not in text:
        text += f" (default: {opt.default})"
    sig = _signature(opt)
    lines = textwrap.wrap(text, 79 - width) or [""]
    head = [sig, " " * width + lines[0]] if len(sig) >= width else [sig.ljust(width) + lines[0]]
    return "\n".join(head + [" " * width + line for line in lines[1:]])


def help_text(verbose: bool) -> str:
    out = [BANNER, "", USAGE, ""]
    if not verbose:
        out += [option_entry(o) for o in OPTIONS if "basic" in o.areas]
        out += ["", 'For complete usage information run "emailrelay --help --verbose"']
        return "\n".join(out) + "\n"
    for area, title in AREA_TITLES.items():
        members = [o for o in OPTIONS if o.areas[0] == area]
        if not members:
            continue
        out += [f"{title}:"] + [option_entry(o) for o in members] + [""]
    return "\n".join(out)


def tls_library_id() -> str:
    """The TLS library as E-MailRelay names it: OpenSSL's own version text."""
    return " ".join(ssl.OPENSSL_VERSION.split())


def version_text(verbose: bool) -> str:
    """E-MailRelay's first line and feature lines (scripts read them), our own identity."""
    lines = [BANNER, "", f"emailrelay for Python {__version__}, compatible with "
             f"E-MailRelay {COMPATIBLE_WITH}", ""]
    if verbose:
        lines += ["Multi-threading: enabled", "Unix domain sockets: enabled",
                  "POP server: enabled", "Admin server: enabled",
                  f"TLS library: {tls_library_id()}", ""]
    lines += [f"TLS: {ssl.OPENSSL_VERSION}, through Python's ssl module", "", *WARRANTY]
    return "\n".join(lines) + "\n"
