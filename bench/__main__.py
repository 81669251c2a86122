"""Run the benchmarks and print one table: ``python -m bench [--quick] [name ...]``.

Without names every benchmark in ``BENCHMARKS`` runs (``soak`` only when named); each
prints its rows as it ends, then comes the one table of the run and the issue's targets
checked against it.  ``--quick`` runs fewer messages, for a look rather than figures.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, table
from bench.targets import check

BENCHMARKS = ["accept", "forward", "footprint", "pop", "scaling"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run (default: {' '.join(BENCHMARKS)}); "
                             "also: soak")
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    options = parser.parse_args(argv)
    chosen = options.names or BENCHMARKS
    results: list[Result] = []
    started = time.monotonic()
    print(f"python -m bench {' '.join(argv)}: {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emailrelay-bench-") as tmp:
        for name in chosen:
            module = importlib.import_module(f"bench.{name}")
            work = Path(tmp) / name
            work.mkdir()
            began = time.monotonic()
            rows = module.run(work, quick=options.quick)
            print(f"{name}: {time.monotonic() - began:.0f} s", table(rows), sep="\n", end="\n\n",
                  flush=True)
            results.extend(rows)
    print(table(results), end="\n\n")
    print("\n".join(check(results)))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
