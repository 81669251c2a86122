"""Start-up time and the memory one huge message costs.

* start-up: from starting the program (a storage daemon in the foreground) to the first
  connection it accepts, the median of several starts; the note also gives the time to
  its 220 greeting;
* 200 MB in and out: a relay with ``--forward-to`` smtp-sink ``--forward-on-disconnect``
  takes one 200 MB message and forwards it when the client disconnects.  A 10 KB message
  goes the same way first, so that every code path has run; the growth is the peak RSS
  (the relay and any children) after the big message minus the peak before it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from bench.common import (
    EMAILRELAY,
    KB,
    MB,
    Program,
    Result,
    busy_note,
    emailrelay_argv,
    free_port,
    fresh_spool,
    make_message,
    postfix_missing,
    settle,
    smtp_client,
    spooled,
    wait_until_empty,
)
from bench.forward import smtp_sink

STARTS = 7
BIG = 200 * MB
STARTUP, IN_AND_OUT = "start-up to listening", "200 MB message in and out"


def startup(work: Path, starts: int) -> Result:
    spool = work / "startup"
    busy = settle()
    listening, greeting, rss = [], [], []
    for _ in range(starts):
        port = free_port()
        program = Program(emailrelay_argv(port, spool), port, work / "startup.log")
        listening.append(program.listening)
        greeting.append(program.startup)
        rss.append(program.peak_rss_kb())
        program.stop()
    notes = [f"median of {starts} (min {min(listening):.3f} s); 220 greeting after "
             f"{statistics.median(greeting):.3f} s; RSS when idle", busy_note(busy)]
    return Result(STARTUP, EMAILRELAY, seconds=statistics.median(listening),
                  peak_rss_kb=max(rss), note=", ".join(n for n in notes if n))


def _send_and_forward(port: int, spool: Path, size: int) -> tuple[float, float, float]:
    """Send one message on its own connection, wait until it has been forwarded;
    (seconds to the 250, final dot to 250, seconds from the disconnect to an empty spool)."""
    latencies: list[float] = []
    message = make_message(size)
    started = time.perf_counter()
    if asyncio.run(smtp_client(port, 1, message, latencies, per_connection=True)) != 1:
        raise RuntimeError("the relay did not take the message")
    accepted = time.perf_counter()
    if not wait_until_empty(spool, 300):
        raise RuntimeError(f"{spooled(spool)} message(s) not forwarded")
    return accepted - started, latencies[0], time.perf_counter() - accepted


def in_and_out(work: Path) -> Result:
    spool = fresh_spool(work, "big")
    with smtp_sink() as (sink, _):
        busy = settle()
        port = free_port()
        program = Program(emailrelay_argv(port, spool, "--forward-to", f"127.0.0.1:{sink}",
                                          "--forward-on-disconnect"), port, work / "big.log")
        try:
            _send_and_forward(port, spool, 10 * KB)
            before = program.peak_rss_kb()
            accept, latency, forward = _send_and_forward(port, spool, BIG)
            peak = program.peak_rss_kb()
        finally:
            program.stop()
    notes = [f"in {accept:.2f} s ({BIG / MB / accept:.0f} MB/s), out {forward:.2f} s "
             f"({BIG / MB / forward:.0f} MB/s); peak RSS +{(peak - before) / 1024:.1f} MB",
             busy_note(busy)]
    return Result(IN_AND_OUT, EMAILRELAY, 1, accept + forward, [latency],
                  peak, ", ".join(n for n in notes if n),
                  figures={"rss_growth_mb": (peak - before) / 1024})


def run(work: Path, quick: bool = False) -> list[Result]:
    results = [startup(work, 3 if quick else STARTS)]
    if why := postfix_missing():
        return [*results, Result(IN_AND_OUT, note=why)]
    return [*results, in_and_out(work)]
