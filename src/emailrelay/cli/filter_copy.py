"""``emailrelay-filter-copy``: copy each new message's envelope into every mailbox subdirectory.

Run by the relay as a ``--filter`` (``emailrelay-filter-copy <content-file>
<envelope-file>``), it copies the envelope into each subdirectory of the spool except
``postmaster`` and dot-directories, leaving the content in the main spool for
``--pop-by-name`` to serve, removes the original envelope and exits 100 (the message
has been dealt with).  On failure it exits 1 and prints the reason between ``<<`` and
``>>`` as a filter does; a spool with no subdirectories is a failure.

``emailrelay-filter-copy [-v] --spool-dir <dir>`` (or ``-d <dir>``) does the same for
every message waiting in a spool directory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from emailrelay.filters.copy import CopyError, copy_to_mailboxes
from emailrelay.logs import setup as logsetup
from emailrelay.spool.store import BUSY, NEW, Spool, SpoolError

PROGRAM = "emailrelay-filter-copy"
EXIT_OK, EXIT_FAILED, EXIT_ABANDON = 0, 1, 100
USAGE = f"""usage: {PROGRAM} <content-file> [<envelope-file>]
       {PROGRAM} [-v] --spool-dir <spool-dir>

Copies a message's envelope into every sub-directory of the spool directory
(except "postmaster" and names starting with a dot), for "emailrelay --pop-by-name".
The content file stays in the main spool directory and the original envelope is
removed: the exit code is then 100, as a filter that has dealt with the message.
With --spool-dir (-d) every waiting message in the spool directory is copied.
"""


class FilterError(Exception):
    pass


def _copy_one(spool: Spool, message_id: str, state: str) -> list[str]:
    result = copy_to_mailboxes(spool, message_id, state, pop=True)
    if not result.copied_to:
        raise FilterError("no sub-directories to copy into (check permissions)")
    return result.copied_to


def _envelope_state(spool: Spool, message_id: str, envelope: str | None) -> str:
    if envelope is not None:
        parsed = Spool.parse_name(Path(envelope).name)
        if parsed is None or parsed[0] != message_id or parsed[1] not in ("", NEW, BUSY):
            raise FilterError(f"invalid envelope file name \"{envelope}\"")
        if not Path(envelope).exists():
            raise FilterError(f"no envelope file \"{envelope}\"")
        return parsed[1]
    for state in (NEW, ""):  # a filter sees ".new"; by hand the message may be ready
        if spool.envelope_path(message_id, state).exists():
            return state
    raise FilterError(f"no envelope file \"{spool.envelope_path(message_id, NEW)}\"")


def run_filter(content_file: str, envelope_file: str | None) -> int:
    content = Path(content_file)
    if not content.is_file():
        raise FilterError("no such file")
    message_id = Spool.parse_content_name(content.name)
    if message_id is None:
        raise FilterError("invalid filename")
    spool = Spool(content.parent, create=False)
    _copy_one(spool, message_id, _envelope_state(spool, message_id, envelope_file))
    return EXIT_ABANDON


def run_spool(directory: str, verbose: bool) -> int:
    spool = Spool(directory, create=False)
    for message_id in spool.ready():
        for name in _copy_one(spool, message_id, ""):
            if verbose:
                print(f"copied: {spool.envelope_path(message_id)} {spool.directory / name}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logsetup.configure(logsetup.LogSettings(program=PROGRAM))
    if args[:1] in (["--help"], ["-h"]):
        sys.stdout.write(USAGE)
        return EXIT_OK
    spool_mode = any(a in ("-d", "--spool-dir") or a.startswith("--spool-dir=") for a in args)
    try:
        if spool_mode:
            return run_spool(*_spool_arguments(args))
        if not args or len(args) > 2 or args[0].startswith("-"):
            raise FilterError("usage error: must be run by emailrelay with the full path of "
                              "a message content file")
        return run_filter(args[0], args[1] if len(args) > 1 else None)
    except (FilterError, CopyError, SpoolError, OSError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if spool_mode:
            print(f"{PROGRAM}: {reason}", file=sys.stderr)
        else:
            print("<<filter failed>>")
            print(f"<<{reason}>>")
        return EXIT_FAILED


def _spool_arguments(args: list[str]) -> tuple[str, bool]:
    verbose = "-v" in args
    rest = [a for a in args if a != "-v"]
    if len(rest) == 1 and rest[0].startswith("--spool-dir="):
        return rest[0].split("=", 1)[1], verbose
    if len(rest) == 2 and rest[0] in ("-d", "--spool-dir"):
        return rest[1], verbose
    raise FilterError(f"usage error: {PROGRAM} [-v] --spool-dir <spool-dir>")


if __name__ == "__main__":
    raise SystemExit(main())
