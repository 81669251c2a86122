"""``--filter``: the filter chain in the SMTP server, where E-MailRelay runs it.

:meth:`ServerFilters.before_publish` is the session's ``before_publish`` hook: it runs
once the message is flushed as ``.envelope.new`` and before it is published, and
turns the outcome into the reply:

* accepted: the message is published (the session does that) and gets ``250``;
* abandoned (exit 100): the message is published if the filter left its files, and
  the client gets ``250`` either way;
* rejected: the message is kept out of the queue as ``.envelope.bad`` with the reason,
  and the client gets the filter's text with its own 4xx/5xx code, or ``452``.

A rescan request (exit 102, 103, 104, or ``split:`` creating messages) calls
:attr:`ServerFilters.request_forward` with ``"rescan"`` once the message is settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.chain import FilterChain
from emailrelay.filters.result import SERVER
from emailrelay.filters.spec import FilterSpec
from emailrelay.smtp import replies
from emailrelay.smtp.session import StoredInfo

log = logging.getLogger("emailrelay.filters")


class ServerFilters:
    def __init__(self, specs: list[FilterSpec], config: FilterConfig) -> None:
        assert config.kind == SERVER
        self.chain = FilterChain(specs, config)
        # The forwarding agent's trigger, E-MailRelay's requestForwarding("rescan"):
        # connected by the instance when forwarding is configured.
        self.request_forward: Callable[[str], None] | None = None

    def _rescan(self) -> None:
        if self.request_forward is not None:
            self.request_forward("rescan")

    async def before_publish(self, info: StoredInfo) -> tuple[bool, str]:
        message = info.message
        job = FilterJob(message.id, message.content_path, message.new_envelope_path)
        result = await self.chain.run(job)
        log.info("filter [%s]: [%s]: %s", self.chain.id, message.id, result.describe(SERVER))
        if result.ok:
            if result.special:
                info.after_publish.append(self._rescan)
            return True, ""
        if result.abandoned:
            await asyncio.to_thread(message.publish_if_present)
            reply = replies.MESSAGE_PROCESSED
        else:
            reply = replies.filter_failure(result.response, result.response_code)
            log.info("rejected by filter: [%s]", result.reason)
            await asyncio.to_thread(message.fail, result.reason, reply[:3])
        if result.special:
            self._rescan()
        return False, reply

    def close(self) -> None:
        self.chain.close()
