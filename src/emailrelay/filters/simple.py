"""``exit:<n>`` and ``sleepms:<ms>``: filters that only answer."""

from __future__ import annotations

import asyncio

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import FilterResult, Verdict, from_exit_code


class ExitFilter:
    """Behaves like a program that exits with the given code and prints nothing."""

    def __init__(self, code: int, config: FilterConfig) -> None:
        self.id = f"exit:{code}"
        self.verdict, self.special = from_exit_code(code, config.kind)

    async def run(self, job: FilterJob) -> FilterResult:
        if self.verdict is Verdict.FAIL:
            return FilterResult(Verdict.FAIL, self.special, "rejected", 0, self.id)
        return FilterResult(self.verdict, self.special)

    def close(self) -> None:
        pass


class SleepFilter:
    def __init__(self, milliseconds: int) -> None:
        self.id = "sleep"
        self.seconds = milliseconds / 1000

    async def run(self, job: FilterJob) -> FilterResult:
        await asyncio.sleep(self.seconds)
        return FilterResult(Verdict.OK)

    def close(self) -> None:
        pass
