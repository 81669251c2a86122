"""The ``copy:`` filter: a copy of each message for every mailbox subdirectory of the spool.

Every subdirectory gets a copy except ``postmaster`` and dot-directories.  Options, as
E-MailRelay's ``copy:`` spells them, separated by ``;``:

* ``pop`` (``p``): copy the envelope only; the content stays in the main spool, where
  ``--pop-by-name`` finds it and removes it with the last envelope.
* ``hardlink`` (``h``): hard-link content files instead of copying them.
* ``nodelete`` (``n``, ``no_delete``): keep the original message.

A subdirectory holding ``tmp``, ``new`` and ``cur`` is a maildir and gets the content
as a new mail.  Unless ``nodelete`` is given, the original is removed after the
copies are on disk and the result is "abandon": the message has been dealt with.
With no subdirectory to copy into, a warning is logged (once) and the message
carries on untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from emailrelay.spool.store import Spool

log = logging.getLogger("emailrelay.filter")

EXCLUDED = "postmaster"

_OPTION_WORDS = {"p": "pop", "pop": "pop", "h": "hardlink", "hardlink": "hardlink",
                 "n": "nodelete", "nodelete": "nodelete", "no_delete": "nodelete"}
_warned_no_subdirectories = False


class CopyError(Exception):
    """A copy could not be made; the original message is left as it was."""


@dataclass(frozen=True)
class CopyOptions:
    pop: bool = False
    hardlink: bool = False
    nodelete: bool = False


def parse_options(spec: str) -> CopyOptions:
    """The options after ``copy:``, e.g. ``pop;hardlink``; raises ValueError for unknown ones."""
    chosen = set()
    for item in (w.strip() for w in spec.split(";")):
        if not item:
            continue
        if item.lower() not in _OPTION_WORDS:
            raise ValueError(f"invalid copy filter option \"{item}\": use pop, hardlink "
                             "or nodelete")
        chosen.add(_OPTION_WORDS[item.lower()])
    return CopyOptions(pop="pop" in chosen, hardlink="hardlink" in chosen,
                       nodelete="nodelete" in chosen)


@dataclass
class CopyResult:
    copied_to: list[str] = field(default_factory=list)
    not_copied_to: list[str] = field(default_factory=list)
    deleted: bool = False  # the original is gone: the filter result is "abandon"


def copy_message(spool: Spool, message_id: str, state: str,
                 options: CopyOptions = CopyOptions()) -> CopyResult:
    """Copy the message whose envelope is in ``state`` (a spool state suffix such as
    ``.new`` for ``--filter`` or ``.busy`` for ``--client-filter``) into the mailboxes."""
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
    for directory in targets:
        try:
            spool.copy_to(message_id, state, directory, hardlink=options.hardlink,
                          envelope_only=options.pop)
        except OSError as e:
            raise CopyError(f"copy filter failed to copy message files into sub-directory "
                            f"[{directory.name}]: {e.strerror}") from None
        result.copied_to.append(directory.name)
    log.info("copy: %s copied to [%s]%s", message_id, ",".join(result.copied_to),
             f" not [{','.join(result.not_copied_to)}]" if result.not_copied_to else "")
    if not options.nodelete:
        spool.delete_message(message_id, state)
        result.deleted = True
    return result
