"""Scaling curve: messages/s and p99 latency against concurrency and message size.

``python -m bench scaling [--quick]``.  Three series, each point a fresh relay on an
empty spool after the disk has settled:

* accept: our pipelining client into a storage daemon (every 250 after fsync), with
  ``connections`` connections reused for many messages;
* drain: ``--as-client`` empties a spool into Postfix's smtp-sink over
  ``--forward-connections`` connections (at most 100, the option's limit; no latency:
  nobody waits for a reply);
* proxy: ``--as-proxy`` to smtp-sink, ``connections`` clients with a connection per
  message; timed until the spool is empty, the latency is the client's, final dot to 250,
  while the relay forwards.

Concurrency 1, 8, 64 and 256 with 10 KB messages; sizes 1 KB to 10 MB with 8
connections.  The relays get ``--max-connections 0 --max-client-connections 0`` so that
256 connections from one address are served.  The points go to ``scaling.csv`` and the
figure to ``scaling.png`` in docs/ (``--quick``: fewer messages, into bench/results/).
"""

from __future__ import annotations

import csv
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.accept import Load, measure
from bench.common import EMAILRELAY, KB, MB, Result, postfix_missing
from bench.forward import drain, proxy, smtp_sink

CONCURRENCY = [1, 8, 64, 256]
SIZES = [1 * KB, 10 * KB, 100 * KB, 1 * MB, 10 * MB]
SIZE, CONNECTIONS = 10 * KB, 8
MESSAGES = 2048  # at most, per point
BYTES = 128 * MB  # at most, per point (so 1 MB: 128 messages, 10 MB: 16)
LIMITS = ("--max-connections", "0", "--max-client-connections", "0")
FORWARD_CONNECTIONS_MAX = 100  # the most --forward-connections takes (options/validate.py)
DOCS = Path(__file__).resolve().parents[1] / "docs"
RESULTS = Path(__file__).resolve().parent / "results"
SERIES = {"accept": "accept (durable)", "drain": "forward: --as-client drain",
          "proxy": "forward: --as-proxy end to end"}


@dataclass
class Point:
    series: str  # a key of SERIES
    axis: str  # "concurrency" or "size"
    connections: int
    size: int
    messages: int
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mb: float | None
    note: str

    @classmethod
    def of(cls, series: str, axis: str, connections: int, size: int, r: Result) -> Point:
        p50, p99 = r.percentile(50), r.percentile(99)
        return cls(series, axis, connections, size, r.messages, round(r.seconds, 3),
                   round(r.rate, 1), None if p50 is None else round(p50 * 1000, 2),
                   None if p99 is None else round(p99 * 1000, 2),
                   None if r.peak_rss_kb is None else round(r.peak_rss_kb / 1024, 1), r.note)


def message_count(size: int, connections: int, fewer: int) -> int:
    """Enough messages to be steady, few enough for the run to stay short."""
    count = max(16, min(MESSAGES, BYTES // size)) // fewer
    return max(connections, count // connections * connections)


def measure_point(series: str, work: Path, sink: int, connections: int, size: int,
                  count: int) -> Result:
    if series == "accept":
        job = Load("scaling", count, source=False, connections=connections)
        return measure(EMAILRELAY, job, work, size, extra=LIMITS)
    if series == "drain":
        return drain(work, sink, count, size, min(connections, FORWARD_CONNECTIONS_MAX))
    # A connection per message is slower: half as many.
    count = max(connections, count // 2 // connections * connections)
    return proxy(work, sink, connections, count, size, extra=LIMITS)


def points(work: Path, fewer: int) -> list[Point]:
    grid = [("concurrency", c, SIZE) for c in CONCURRENCY] + [
        ("size", CONNECTIONS, s) for s in SIZES if s != SIZE]
    found: list[Point] = []
    with smtp_sink() as (sink, _):
        for axis, connections, size in grid:
            count = message_count(size, connections, fewer)
            for series in SERIES:
                result = measure_point(series, work, sink, connections, size, count)
                used = min(connections, FORWARD_CONNECTIONS_MAX) if series == "drain" else (
                    connections)
                point = Point.of(series, axis, used, size, result)
                print(f"scaling: {point}", flush=True)
                found.append(point)
                if axis == "concurrency" and connections == CONNECTIONS:
                    found.append(Point(**{**asdict(point), "axis": "size"}))
    return found


def _label(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def _revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=DOCS.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"


def plot(found: list[Point], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter, NullLocator
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    colours = dict(zip(SERIES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    for column, axis in enumerate(("concurrency", "size")):
        for series, label in SERIES.items():
            line = sorted((p for p in found if p.series == series and p.axis == axis
                           and p.messages), key=lambda p: (p.connections, p.size))
            xs = [p.connections if axis == "concurrency" else p.size for p in line]
            axes[0][column].plot(xs, [p.rate for p in line], marker="o", label=label,
                                 color=colours[series])
            if any(p.p99_ms is not None for p in line):
                axes[1][column].plot(xs, [p.p99_ms for p in line], marker="o", label=label,
                                     color=colours[series])
        ticks = CONCURRENCY if axis == "concurrency" else SIZES
        for row in (0, 1):
            ax = axes[row][column]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(ticks, [str(t) if axis == "concurrency" else _label(t)
                                  for t in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_formatter(LogFormatter())  # 100 rather than 10^2
            ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
            ax.set_xlabel("connections (10 KB messages)" if axis == "concurrency" else
                          f"message size ({CONNECTIONS} connections)")
        axes[0][column].set_ylabel("messages/s")
        axes[1][column].set_ylabel("p99, final dot to 250 (ms)")
    figure.suptitle(f"emailrelay on 2 cores, every 250 after fsync ({_revision()}); "
                    f"drain: at most {FORWARD_CONNECTIONS_MAX} connections")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def run(work: Path, quick: bool = False) -> list[Result]:
    if why := postfix_missing():
        return [Result("scaling curve", note=why)]
    output = RESULTS if quick else DOCS
    output.mkdir(parents=True, exist_ok=True)
    found = points(work, 8 if quick else 1)
    with open(output / "scaling.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Point.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(p) for p in found)
    plot(found, output / "scaling.png")
    best = max((p for p in found if p.series == "accept"), key=lambda p: p.rate)
    return [Result("scaling curve", EMAILRELAY,
                   note=f"{len(found)} points in {output / 'scaling.png'} and scaling.csv; "
                        f"best accept {best.rate:,.0f} msg/s at {best.connections} conns, "
                        f"{_label(best.size)}")]
