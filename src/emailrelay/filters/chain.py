"""The filters of one option, run in order until one does not accept."""

from __future__ import annotations

import dataclasses
import logging

from emailrelay.filters.base import Filter, FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult, failure
from emailrelay.filters.spec import FilterSpec
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.filters")


def build_filter(spec: FilterSpec, config: FilterConfig) -> Filter:
    # Imported here so that a relay without filters never loads dnspython and friends.
    kind, value = spec.kind, spec.value
    if kind == "exit":
        from emailrelay.filters.simple import ExitFilter
        return ExitFilter(int(value), config)
    if kind == "sleepms":
        from emailrelay.filters.simple import SleepFilter
        return SleepFilter(int(value))
    if kind == "net":
        from emailrelay.filters.network import NetworkFilter
        return NetworkFilter(value, config)
    if kind in ("spam", "spam-edit"):
        from emailrelay.filters.spamd import SpamFilter
        return SpamFilter(value, config, edit=kind == "spam-edit")
    if kind == "deliver":
        from emailrelay.filters.deliver import DeliverFilter
        return DeliverFilter(value, config)
    if kind == "copy":
        from emailrelay.filters.copy_adapter import CopyFilter
        return CopyFilter(value, config)
    if kind == "split":
        from emailrelay.filters.split import SplitFilter
        return SplitFilter(value, config)
    if kind == "mx":
        from emailrelay.filters.mx import MxFilter
        return MxFilter(value, config)
    if kind == "msgid":
        from emailrelay.filters.msgid import MessageIdFilter
        return MessageIdFilter(config)
    from emailrelay.filters.executable import ExecutableFilter
    return ExecutableFilter(value, config)


class FilterChain:
    def __init__(self, specs: list[FilterSpec], config: FilterConfig) -> None:
        self.config = config
        self.filters = [build_filter(spec, config) for spec in specs]
        self.id = ",".join(f.id for f in self.filters)

    async def run(self, job: FilterJob) -> FilterResult:
        """Run each filter in turn; the first that does not accept decides.

        A rescan (or stop) asked for by any filter that ran is kept, where E-MailRelay
        would keep only the last filter's.
        """
        result = OK
        special = False
        for f in self.filters:
            try:
                result = await f.run(job)
            except (OSError, ValueError, RuntimeError) as e:
                # A built-in that could not do its work (unreadable envelope, disk full...).
                text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                log.warning("%s [%s]: [%s]: %s", self.config.kind, f.id, job.message_id,
                            printable(text))
                result = failure("failed", printable(text))
            special = special or result.special
            if not result.ok:
                break
        return dataclasses.replace(result, special=special)

    def close(self) -> None:
        for f in self.filters:
            f.close()
