"""``--client-filter``: the filter chain for the forwarding agent.

The forwarding agent calls :func:`run_client_filters` for each message it has locked,
just before sending it (or, as E-MailRelay's "routing filter", before connecting when
the envelope has a ``ForwardTo``), and acts on the outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.chain import FilterChain
from emailrelay.filters.result import CLIENT, ROUTING, FilterResult, Verdict, failure
from emailrelay.filters.spec import FilterSpec
from emailrelay.spool.envelope import EnvelopeError
from emailrelay.spool.store import StoredMessage
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.filters")

FILTER_FAILURE_CODE = 550  # E-MailRelay's ReasonCode for a client-filter failure


@dataclass(frozen=True)
class ClientFilterOutcome:
    """What to do with the message after the client filters.

    ``verdict``:

    * ``Verdict.OK``: send it.  ``message.envelope`` has been read again, since a filter
      may have changed it (``ForwardToAddress`` from ``mx:``, recipients...).
    * ``Verdict.FAIL``: do not send it; ``message.fail(outcome.reason,
      outcome.reason_code)`` marks it ``.bad`` as E-MailRelay does.
    * ``Verdict.ABANDON``: do not send it and leave it be: ``message.release()`` it if
      its envelope still exists (the filter may have removed or moved the files).

    ``stop_scan``: finish this message, then end the forwarding run without taking
    more messages (exit codes 102, 104, 105).  Exit 103 is a plain success on this
    side (E-MailRelay's table); rescans are a server-filter matter.
    """

    verdict: Verdict
    stop_scan: bool = False
    reason: str = ""  # FAIL: for Reason in the .bad envelope and the log
    reason_code: int = 0  # FAIL: for ReasonCode
    result: FilterResult | None = None  # the chain's raw result, for logs

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class ClientFilters:
    def __init__(self, specs: list[FilterSpec], config: FilterConfig) -> None:
        assert config.kind in (CLIENT, ROUTING)
        self.chain = FilterChain(specs, config)
        self.kind = config.kind

    async def run(self, message: StoredMessage) -> ClientFilterOutcome:
        return await run_client_filters(self, message)

    def close(self) -> None:
        self.chain.close()


async def run_client_filters(filters: ClientFilters, message: StoredMessage
                             ) -> ClientFilterOutcome:
    """Run the client filter chain on a message locked with :meth:`Spool.lock`.

    The filters see ``<id>.content`` and ``<id>.envelope.busy`` and may change or
    remove them.  Never raises for a filter's failure: it comes back as
    ``Verdict.FAIL`` with the reason (ReasonCode 550, as E-MailRelay).  See
    :class:`ClientFilterOutcome` for what the caller does next.  The filters run as the
    relay's unprivileged user, each program bounded by ``--filter-timeout``; the event
    loop is never blocked.
    """
    job = FilterJob(message.id, message.content_path, message.envelope_path)
    result = await filters.chain.run(job)
    log.info("%s [%s]: [%s]: %s", filters.kind, filters.chain.id, message.id,
             result.describe(filters.kind))
    if result.ok:
        try:
            message.reopen()
        except (OSError, EnvelopeError) as e:
            text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            result = failure("failed", f"cannot read the envelope again: {printable(text)}",
                             special=result.special)
    if result.failed:
        return ClientFilterOutcome(Verdict.FAIL, result.special, result.reason,
                                   FILTER_FAILURE_CODE, result)
    return ClientFilterOutcome(result.verdict, result.special, result=result)
