"""The ``copy:`` filter: a copy of each message for every mailbox subdirectory of the spool.

Every subdirectory gets a copy except ``postmaster`` and dot-directories.  Options, as
E-MailRelay's ``copy:`` spells them, separated by ``;`` (parsed by the filter chain,
:mod:`emailrelay.filters.copy_adapter`):

* ``pop`` (``p``): copy the envelope only; the content stays in the main spool, where
  ``--pop-by-name`` finds it and removes it with the last envelope.
* ``hardlink`` (``h``): hard-link content files instead of copying them.
* ``nodelete`` (``n``, ``no_delete``): keep the original message.

A subdirectory holding ``tmp``, ``new`` and ``cur`` is a maildir and gets the content
as a new mail.  Unless ``nodelete`` is given, the original is removed once the copies
are on disk and the exit code is 100 ("abandon": the message has been dealt with).
With no subdirectory to copy into, a warning is logged (once) and the message carries
on untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from emailrelay.spool.store import Spool, SpoolError, deliver_to_mailbox

log = logging.getLogger("emailrelay.filter")

EXCLUDED = "postmaster"
EXIT_OK, EXIT_FAILED, EXIT_ABANDON = 0, 1, 100

_warned_no_subdirectories = False


class CopyError(Exception):
    """A copy could not be made; the original message is left as it was."""


@dataclass
class CopyResult:
    copied_to: list[str] = field(default_factory=list)
    not_copied_to: list[str] = field(default_factory=list)
    deleted: bool = False  # the original is gone


def copy_to_mailboxes(spool: Spool, message_id: str, state: str, *, pop: bool = False,
                      hardlink: bool = False, nodelete: bool = False) -> CopyResult:
    """Copy the message whose envelope is in ``state`` (a spool state suffix: ``.new`` for
    ``--filter``, ``.busy`` for ``--client-filter``) into the mailboxes; blocking."""
    global _warned_no_subdirectories
    result = CopyResult()
    targets = []
    for directory in spool.subdirectories():
        if directory.name == EXCLUDED:
            result.not_copied_to.append(directory.name)
        else:
            targets.append(directory)
    if not targets:
        if not _warned_no_subdirectories:
            _warned_no_subdirectories = True
            log.warning("copy filter: no sub-directories of [%s] to copy in to", spool.directory)
        return result
    content, envelope = spool.content_path(message_id), spool.envelope_path(message_id, state)
    for directory in targets:
        try:
            deliver_to_mailbox(directory, message_id, content, envelope, hardlink=hardlink,
                               envelope_only=pop)
        except OSError as e:
            raise CopyError(f"failed to copy message files into sub-directory "
                            f"[{directory.name}]: {e.strerror}") from None
        result.copied_to.append(directory.name)
    log.info("copy: %s copied to [%s]%s", message_id, ",".join(result.copied_to),
             f" not [{','.join(result.not_copied_to)}]" if result.not_copied_to else "")
    if not nodelete:
        spool.delete_message(message_id, state)
        result.deleted = True
    return result


def copy_message(spool_dir: Path, content: Path, envelope: Path, *, nodelete: bool = False,
                 pop: bool = False, hardlink: bool = False) -> int:
    """The filter chain's entry point: copy one message, returning a filter exit code
    (0 carry on, 100 the original is gone, 1 failed; the reason is logged)."""
    message_id = Spool.parse_content_name(content.name)
    parsed = Spool.parse_name(envelope.name)
    if message_id is None or parsed is None or parsed[0] != message_id:
        log.error("copy filter: not a spooled message: [%s] [%s]", content, envelope)
        return EXIT_FAILED
    try:
        result = copy_to_mailboxes(Spool(spool_dir, create=False), message_id, parsed[1],
                                   pop=pop, hardlink=hardlink, nodelete=nodelete)
    except (CopyError, SpoolError, OSError) as e:
        log.error("copy filter: %s", e)
        return EXIT_FAILED
    return EXIT_ABANDON if result.deleted else EXIT_OK
