"""The targets of issue 12, checked against one run's table."""

from __future__ import annotations

from bench.common import Result


def check(results: list[Result]) -> list[str]:
    return []
