"""Run the benchmark modules and print one table: ``python -m bench [module ...]``.

Each module in :data:`MODULES` has ``run() -> list[Result]``; add a line to register one.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

MODULES = [
    "bench.forward",
]


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    peak_rss_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def main(argv: list[str]) -> int:
    chosen = [m for m in MODULES if not argv or m.rsplit(".", 1)[-1] in argv]
    results: list[Result] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(importlib.import_module(name).run())
    header = f"{'benchmark':<44} {'messages':>9} {'seconds':>8} {'msg/s':>9} {'peak RSS':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.name:<44} {r.messages:>9} {r.seconds:>8.2f} {r.rate:>9.0f} "
              f"{r.peak_rss_mb:>7.1f}MB  {r.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
