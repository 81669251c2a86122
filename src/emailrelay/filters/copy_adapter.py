"""``copy:``: the chain's side of the copy filter.

The copying itself lives in :mod:`emailrelay.filters.copy` (written with the POP3
feature) as ``copy_message(spool_dir, content, envelope, *, nodelete, pop, hardlink)``
returning an exit code, read here with the usual exit-code table.  Options
(``;``-separated): ``pop`` (``p``), ``hardlink`` (``h``), ``nodelete`` (``n``,
``no_delete``).
"""

from __future__ import annotations

import asyncio

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.copy import copy_message
from emailrelay.filters.result import FilterResult, Verdict, failure, from_exit_code


class CopyFilter:
    def __init__(self, options: str, config: FilterConfig) -> None:
        self.id = "copy:"
        self.config = config
        words = {w.strip() for w in options.split(";") if w.strip()}
        self.pop = bool(words & {"p", "pop"})
        self.hardlink = bool(words & {"h", "hardlink"})
        self.nodelete = bool(words & {"n", "nodelete", "no_delete"})

    async def run(self, job: FilterJob) -> FilterResult:
        code = await asyncio.to_thread(
            copy_message, self.config.spool.directory, job.content, job.envelope,
            nodelete=self.nodelete, pop=self.pop, hardlink=self.hardlink)
        verdict, special = from_exit_code(int(code), self.config.kind)
        if verdict is Verdict.FAIL:
            return failure("failed", f"copy: exit code {code}", special=special)
        return FilterResult(verdict, special)

    def close(self) -> None:
        pass
