"""``emailrelay-submit``: put a message into the spool directory for the relay to forward.

Exit codes: 0 when every message was stored, 1 for any error (a bad option included:
E-MailRelay 2.6 reports those but exits 0, which hides them from scripts).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from emailrelay import COMPATIBLE_WITH
from emailrelay.logs import setup as logsetup
from emailrelay.options.parser import UsageError
from emailrelay.spool.store import NewMessage, SpoolError
from emailrelay.submit.compose import Submission, open_input, spool_for
from emailrelay.submit.headers import MessageError
from emailrelay.submit.options import SubmitArgs, help_text, parse

PROGRAM = "emailrelay-submit"
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def submit(args: SubmitArgs) -> None:
    stdin = sys.stdin.buffer if sys.stdin is not None else None  # None: started without one
    source = open_input(args, stdin)
    try:
        submission = Submission(args, source)
        submission.read_headers()
        submission.choose_addresses()
        submission.add_headers()
        drafts = submission.drafts()
        submission.write(spool_for(args), drafts, lambda m: _report(args, m))
    finally:
        if source.stream is not None and source.stream is not stdin:
            source.stream.close()


def _report(args: SubmitArgs, message: NewMessage) -> None:
    if args.flag("verbose"):
        print(message.content_path, flush=True)
    elif args.flag("filename"):
        print(message.content_path.name, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(list(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        print(f"{' ' * (len(PROGRAM) + 2)}try \"{PROGRAM} --help --verbose\" for more "
              "information", file=sys.stderr)
        return EXIT_ERROR
    if args.flag("help"):
        sys.stdout.write(help_text(args.flag("verbose")))
        return EXIT_OK
    if args.flag("version"):
        print(COMPATIBLE_WITH)
        return EXIT_OK
    if args.flag("debug"):
        logsetup.configure(logsetup.LogSettings(enabled=True, debug=args.count("debug") > 1,
                                                program=PROGRAM))
    try:
        submit(args)
    except (MessageError, SpoolError) as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        where = f" \"{e.filename}\"" if e.filename else ""
        print(f"{PROGRAM}: cannot store the message{where}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted: nothing was submitted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
