"""Coverage-guided fuzzing of every target with atheris: ``python -m tests.fuzz``.

``--seconds N`` per target (default 120), ``--corpus DIR`` to keep and grow the corpora
between runs (default: a temporary directory, seeded from :data:`targets.SEEDS`), target
names to run only those.  Prints inputs run, coverage and crashes per target; crash inputs
are kept in ``--crashes DIR`` (default ``$TMPDIR/emailrelay-fuzz-crashes``).  Exits 1 if any
target crashed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.targets import SEEDS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
DONE = re.compile(rb"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+)")


def fuzz(target: str, seconds: int, corpus: Path,
         crashes: Path) -> tuple[int, int, bool, str]:
    """(inputs run, coverage, crashed, what went wrong) for one target."""
    inputs = corpus / target
    inputs.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(SEEDS[target]):
        (inputs / f"seed-{n}").write_bytes(seed)
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.one", target, f"-max_total_time={seconds}",
         f"-artifact_prefix={crashes}/{target}-", "-rss_limit_mb=2048", "-timeout=10",
         str(inputs)],
        capture_output=True, cwd=ROOT, timeout=seconds + 120)
    output = result.stdout + result.stderr
    stats = DONE.findall(output)
    runs, coverage = (int(stats[-1][0]), int(stats[-1][1])) if stats else (0, 0)
    crashed = result.returncode != 0
    text = output.decode(errors="replace")
    start = max(text.find("=== Uncaught Python exception"), text.find("==ERROR"), 0)
    report = "\n".join(line for line in text[start:].splitlines()
                       if not line.startswith("#"))[-4000:] if crashed else ""
    return runs, coverage, crashed, report


def main() -> int:
    parser = argparse.ArgumentParser(description="fuzz the parsers with atheris")
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--crashes", type=Path,
                        default=Path(tempfile.gettempdir()) / "emailrelay-fuzz-crashes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emailrelay-fuzz-") as tmp:
        corpus = args.corpus or Path(tmp)
        failed = False
        total_runs, started = 0, time.monotonic()
        print(f"{'target':<22}{'inputs':>12}{'seconds':>9}{'coverage':>10}  result", flush=True)
        for target in args.targets or TARGETS:
            runs, coverage, crashed, report = fuzz(target, args.seconds, corpus, args.crashes)
            total_runs += runs
            failed |= crashed
            print(f"{target:<22}{runs:>12,}{args.seconds:>9}{coverage:>10}  "
                  f"{'CRASH' if crashed else 'no crash'}", flush=True)
            if crashed:
                print(report)
        print(f"{'total':<22}{total_runs:>12,}{time.monotonic() - started:>9.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
