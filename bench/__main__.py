"""Run every benchmark and print one table: ``python -m bench [name ...]``."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from bench.common import Result, table

BENCHMARKS = ["accept", "forward", "pop"]


def main(names: list[str]) -> int:
    chosen = names or BENCHMARKS
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="emailrelay-bench-") as tmp:
        for name in chosen:
            module = importlib.import_module(f"bench.{name}")
            work = Path(tmp) / name
            work.mkdir()
            results.extend(module.run(work))
            print(table(results), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
