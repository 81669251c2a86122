"""``emailrelay``: the relay's command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from emailrelay.app.runtime import EXIT_ERROR, Runtime
from emailrelay.options.help import help_text, version_text
from emailrelay.options.parser import CommandLine, UsageError, parse
from emailrelay.options.validate import validate
from emailrelay.process.daemon import program_name
from emailrelay.uci import instances as uci


def usage_error(error: UsageError) -> int:
    name = program_name()
    kind = "error" if error.parse_error else "usage error"
    print(f"{name}: {kind}: {error}", file=sys.stderr)
    print(f"{' ' * (len(name) + 2)}try \"{name} --help --verbose\" for more information",
          file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cl: CommandLine = parse(args)
    except UsageError as e:
        if "--help" in args or "-h" in args:
            sys.stdout.write(help_text("--verbose" in args or "-v" in args))
            return 0
        return usage_error(e)
    p = cl.process
    if p.flag("help"):
        sys.stdout.write(help_text(p.flag("verbose")))
        return 0
    if p.flag("version"):
        sys.stdout.write(version_text(p.flag("verbose")))
        return 0
    try:
        if p.flag("print-command-line"):
            sys.stdout.write(uci.command_lines(cl))
            return 0
        if p.has("uci"):
            cl = uci.instances(cl)
        warnings = validate(cl)
    except UsageError as e:
        return usage_error(e)
    for warning in warnings:
        print(f"{program_name()}: warning: {warning}", file=sys.stderr)
    return Runtime(cl).run()


if __name__ == "__main__":
    raise SystemExit(main())
