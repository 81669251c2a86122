"""``split:``: one message per recipient domain, each routed by its ``ForwardTo``.

The first domain (in sorted order) stays with the original message; every other one
gets a new message sharing the content (a hard link) and carrying only that domain's
remote recipients.  ``ForwardTo`` is set to the domain (with ``:<port>`` when the
options hold a port number), so that a client filter such as ``mx:`` can route it.
Domains are compared case-insensitively unless the option ``raw`` is given.  New
messages are not seen by the other server filters; the forwarding agent is asked to
rescan the spool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import FilterResult, Verdict
from emailrelay.spool.durable import fsync_directory
from emailrelay.spool.envelope import PREFIX, Envelope, parse
from emailrelay.spool.store import write_envelope_file

log = logging.getLogger("emailrelay.filters")


class SplitFilter:
    def __init__(self, options: str, config: FilterConfig) -> None:
        self.id = "split:"
        self.config = config
        words = [w.strip() for w in options.split(";") if w.strip()]
        self.raw = "raw" in words
        ports = [w for w in words if w.isdigit()]
        self.port = ports[-1] if ports else ""

    def domain_of(self, address: str) -> str:
        domain = address.rpartition("@")[2] if "@" in address else ""
        return domain if self.raw else domain.lower()

    async def run(self, job: FilterJob) -> FilterResult:
        created = await asyncio.to_thread(self._split, job)
        return FilterResult(Verdict.OK, special=self.config.server and created > 0)

    def _forward_to(self, domain: str) -> str:
        return f"{domain}:{self.port}" if self.port else domain

    def _split(self, job: FilterJob) -> int:
        prefix = f"{self.config.kind} [split:]"
        envelope = parse(job.envelope.read_bytes())
        domains = sorted({self.domain_of(to) for to in envelope.to_remote})
        if not domains:
            log.info("%s: no remote domains: nothing to do", prefix)
            return 0
        spool = self.config.spool
        groups = {d: [to for to in envelope.to_remote if self.domain_of(to) == d]
                  for d in domains}
        ids = [job.message_id] + [spool.link_content(job.message_id) for _ in domains[1:]]
        extra = [f"{PREFIX}SplitGroupCount: {len(ids)}",
                 *(f"{PREFIX}SplitGroup: {i}" for i in ids)] if len(ids) > 1 else []
        try:
            for message_id, domain in zip(ids[1:], domains[1:], strict=True):
                log.info("%s creating [%s]: forward-to=[%s]", prefix, message_id, domain)
                write_envelope_file(spool.envelope_path(message_id), self._edited(
                    envelope, groups[domain], domain, extra, keep_local=False))
        except BaseException:
            for message_id in ids[1:]:
                spool.envelope_path(message_id).unlink(missing_ok=True)
                spool.content_path(message_id).unlink(missing_ok=True)
            raise
        log.info("%s updating [%s]: forward-to=[%s]", prefix, job.message_id, domains[0])
        write_envelope_file(job.envelope, self._edited(envelope, groups[domains[0]], domains[0],
                                                       extra, keep_local=True))
        fsync_directory(str(job.envelope.parent))
        return len(ids) - 1

    def _edited(self, envelope: Envelope, recipients: list[str], domain: str,
                extra: list[str], *, keep_local: bool) -> Envelope:
        return dataclasses.replace(
            envelope, to_local=list(envelope.to_local) if keep_local else [],
            to_remote=recipients, forward_to=self._forward_to(domain),
            extra=list(envelope.extra) + extra)

    def close(self) -> None:
        pass
