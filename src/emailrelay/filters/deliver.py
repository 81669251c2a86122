"""``deliver:``: put a copy of the message into each local recipient's mailbox.

Local recipients are the ``To-Local`` lines an address verifier wrote: each is a
mailbox name, a directory under ``--delivery-dir`` (created when missing).  A maildir
gets the content in ``new/``; any other mailbox gets the content and envelope files.
Options (``;``-separated): ``hardlink`` (``h``) links instead of copying the content,
``nodelete`` (``n``, ``no_delete``) keeps the original.  A message without remote
recipients is then removed from the spool (the filter "abandons" it).
"""

from __future__ import annotations

import asyncio
import logging
import os

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult, Verdict
from emailrelay.spool.envelope import parse
from emailrelay.spool.store import DIR_MODE, deliver_to_mailbox
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.filters")


class DeliveryError(ValueError):
    pass


def _valid_mailbox(name: str) -> bool:
    return bool(name) and name.isprintable() and "/" not in name and "\\" not in name \
        and name not in (".", "..")


class DeliverFilter:
    def __init__(self, options: str, config: FilterConfig) -> None:
        self.id = "deliver:"
        self.config = config
        words = [w.strip() for w in options.split(";") if w.strip()]
        self.hardlink = any(w in ("h", "hardlink") for w in words)
        self.keep = any(w in ("n", "nodelete", "no_delete") for w in words)

    async def run(self, job: FilterJob) -> FilterResult:
        removed = await asyncio.to_thread(self._deliver, job)
        return FilterResult(Verdict.ABANDON) if removed else OK

    def _deliver(self, job: FilterJob) -> bool:
        envelope = parse(job.envelope.read_bytes())
        if not envelope.to_local:
            return False
        base = self.config.delivery_dir
        if base != self.config.spool.directory:
            log.info("delivery: delivering %s to [%s/<mbox>]", job.message_id, base)
        for mailbox in sorted(set(envelope.to_local)):
            if not _valid_mailbox(mailbox):
                raise DeliveryError(f"invalid mailbox name: {printable(mailbox)}")
            directory = base / mailbox
            if not directory.is_dir():
                log.info("delivery: creating mailbox [%s]", mailbox)
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            name = deliver_to_mailbox(directory, job.message_id, job.content, job.envelope,
                                      hardlink=self.hardlink)
            log.info("delivery: %s delivered to mailbox [%s] as %s", job.message_id, mailbox,
                     name)
        if envelope.to_remote or self.keep:
            return False
        job.content.unlink(missing_ok=True)
        job.envelope.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        pass
