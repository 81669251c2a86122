"""Forwarding to Postfix's smtp-sink.

* drain: ``emailrelay --as-client`` empties a spool of 2,000 10 KB messages, timed from
  the start of the program to its exit (its start-up included);
* proxy: ``emailrelay --as-proxy`` (forwarding whenever a client disconnects) takes
  2,000 10 KB messages from smtp-source ``-s 8`` (a connection per message, as the
  reference figures were measured), and again from our client (8 clients, a connection
  per message, measuring the latency from the final dot to the 250), timed until the
  spool is empty again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    EMAILRELAY,
    KB,
    Program,
    Result,
    busy_note,
    emailrelay_argv,
    fill_spool,
    free_port,
    fresh_spool,
    load,
    make_message,
    postfix_missing,
    run_to_exit,
    settle,
    sink_argv,
    smtp_source,
    spooled,
    wait_for_port,
    wait_until_empty,
)

DRAIN_MESSAGES = 2000
PROXY_MESSAGES = 2000
CLIENTS = 8
SIZE = 10 * KB
DRAIN, PROXY = "forward: --as-client drains the spool", "forward: --as-proxy end to end"


@contextmanager
def smtp_sink() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(sink_argv(port), stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def drain(work: Path, sink: int, messages: int = DRAIN_MESSAGES, size: int = SIZE,
          connections: int | None = None, pipelining: bool = False) -> Result:
    """``--as-client`` on a full spool; ``connections``: ``--forward-connections``;
    ``pipelining``: ``--client-smtp-config pipelining`` (off by default, as in E-MailRelay)."""
    spool = fresh_spool(work, "drain")
    fill_spool(spool, messages, size)
    busy = settle()
    extra = [] if connections is None else ["--forward-connections", str(connections)]
    if pipelining:
        extra += ["--client-smtp-config", "pipelining"]
    code, elapsed, peak = run_to_exit([sys.executable, "-m", "emailrelay", "--user", "root",
                                       "--as-client", f"127.0.0.1:{sink}", "--spool-dir",
                                       str(spool), *extra])
    left = spooled(spool)
    notes = ["start-up included" if connections is None else
             f"--forward-connections {connections}",
             "--client-smtp-config pipelining" if pipelining else "", busy_note(busy)]
    if code or left:
        notes.append(f"exit {code}, {left} left")
    return Result(DRAIN, EMAILRELAY, messages - left,
                  elapsed, peak_rss_kb=peak, note=", ".join(n for n in notes if n))


def proxy(work: Path, sink: int, clients: int = CLIENTS, messages: int = PROXY_MESSAGES,
          size: int = SIZE, source: bool = False, extra: tuple[str, ...] = ()) -> Result:
    """``--as-proxy``: clients with a connection per message, timed until all is sent."""
    spool = fresh_spool(work, "proxy")
    busy = settle()
    port = free_port()
    program = Program(emailrelay_argv(port, spool, "--as-proxy", f"127.0.0.1:{sink}", *extra),
                      port, work / "proxy.log")
    try:
        started = time.perf_counter()
        if source:
            smtp_source(port, messages, size, clients, reuse=False)
            latencies: list[float] = []
        else:
            _, _, latencies = asyncio.run(load(port, clients, messages // clients,
                                               make_message(size), per_connection=True))
        emptied = wait_until_empty(spool, 300)
        elapsed = time.perf_counter() - started
        rss = program.peak_rss_kb()
    finally:
        program.stop()
    left = spooled(spool)
    sent = messages if source else len(latencies)
    notes = [f"smtp-source -s {clients}" if source else f"{clients} clients",
             "conn/msg", busy_note(busy), "" if emptied else f"{left} left"]
    return Result(PROXY, EMAILRELAY, sent - left, elapsed,
                  latencies, rss, ", ".join(n for n in notes if n))


def run(work: Path, quick: bool = False) -> list[Result]:
    if why := postfix_missing():
        return [Result("forward", note=why)]
    scale = 4 if quick else 1
    with smtp_sink() as (sink, _):
        return [drain(work, sink, DRAIN_MESSAGES // scale),
                drain(work, sink, DRAIN_MESSAGES // scale, pipelining=True),
                proxy(work, sink, messages=PROXY_MESSAGES // scale, source=True),
                proxy(work, sink, messages=PROXY_MESSAGES // scale)]
