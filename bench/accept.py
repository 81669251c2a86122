"""Accepting mail: our relay (durable) beside aiosmtpd 1.4.6 and Postfix's smtp-sink.

Every load runs against three servers, each started afresh on an empty spool:

* emailrelay: every 250 after the content, the envelope and the directory are fsynced;
  once as one process and once with ``--workers 2`` (a second process on the same socket);
* aiosmtpd 1.4.6 writing the same two files per message, without fsync;
* smtp-sink, which keeps nothing: the ceiling of the load generator and the loopback.

The loads, 10 KB messages over 8 connections:

* our pipelining client (MAIL, RCPT and DATA in one write), connections reused; it
  measures the latency from the final dot to the 250;
* Postfix's smtp-source, ``-s 8 -d`` (connections reused) and ``-s 8`` (a connection per
  message); it does not pipeline and measures no latency;
* our client again with a connection per message (our relay only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import (
    AIOSMTPD,
    EMAILRELAY,
    KB,
    SINK,
    Program,
    Result,
    aiosmtpd_argv,
    busy_note,
    emailrelay_argv,
    free_port,
    fresh_spool,
    load,
    make_message,
    postfix_missing,
    settle,
    sink_argv,
    smtp_source,
    spooled,
)

CONNECTIONS = 8
SIZE = 10 * KB
WORKERS = ("--workers", "2")
EMAILRELAY_WORKERS = f"{EMAILRELAY} {' '.join(WORKERS)}"

SERVERS: dict[str, Callable[[int, Path], list[str]]] = {
    SINK: lambda port, spool: sink_argv(port),
    EMAILRELAY: emailrelay_argv,
    AIOSMTPD: aiosmtpd_argv,
}
NOTES = {SINK: "keeps nothing", EMAILRELAY: "fsync before each 250",
         AIOSMTPD: "same files, no fsync"}


@dataclass
class Load:
    name: str
    messages: int  # in all, over ``connections`` connections
    source: bool  # smtp-source rather than our client
    per_connection: bool = False  # a connection per message
    connections: int = CONNECTIONS

    def apply(self, port: int, size: int) -> tuple[int | None, float, list[float]]:
        """(messages that got 250 if known, seconds, latencies)."""
        if self.source:
            return None, smtp_source(port, self.messages, size, self.connections,
                                     reuse=not self.per_connection), []
        return asyncio.run(load(port, self.connections, self.messages // self.connections,
                                make_message(size), self.per_connection))


PIPELINING = Load(f"accept: {CONNECTIONS} pipelining conns, 10 KB", 8000, source=False)
SOURCE_REUSE = Load(f"accept: smtp-source -s {CONNECTIONS} -d, 10 KB", 8000, source=True)
SOURCE_PER_MESSAGE = Load(f"accept: smtp-source -s {CONNECTIONS}, 10 KB (conn/msg)", 4000,
                          source=True, per_connection=True)
CLIENT_PER_MESSAGE = Load(f"accept: {CONNECTIONS} clients, 10 KB (conn/msg)", 2000,
                          source=False, per_connection=True)


def measure(server: str, job: Load, work: Path, size: int = SIZE,
            extra: tuple[str, ...] = ()) -> Result:
    """One load against a fresh server on an empty spool, after the disk has settled."""
    spool = fresh_spool(work, "spool")
    busy = settle()
    port = free_port()
    argv = SERVERS[server](port, spool) + list(extra)
    program = Program(argv, port, work / f"{server.split()[0]}.log")
    try:
        sent, seconds, latencies = job.apply(port, size)
        stored = None if server == SINK else spooled(spool)
        rss = program.peak_rss_kb()
    finally:
        program.stop()
    messages = stored if stored is not None else sent
    if messages is None:  # smtp-source into smtp-sink: it stops at the first error
        messages = job.messages
    note = ", ".join(n for n in (NOTES[server], busy_note(busy)) if n)
    if sent is not None and stored is not None and sent != stored:
        note += f", {sent} acknowledged but {stored} stored"
    label = " ".join((server, *extra))
    return Result(job.name, label, messages, seconds, latencies, rss, note)


def run(work: Path, quick: bool = False) -> list[Result]:
    if why := postfix_missing():
        return [Result("accept", note=why)]
    fewer = 8 if quick else 1
    results = []
    for job in (PIPELINING, SOURCE_REUSE, SOURCE_PER_MESSAGE):
        fewer_job = replace(job, messages=job.messages // fewer)
        results += [measure(server, fewer_job, work) for server in SERVERS]
        if not job.per_connection:
            results.append(measure(EMAILRELAY, fewer_job, work, extra=WORKERS))
    results.append(measure(EMAILRELAY, replace(CLIENT_PER_MESSAGE,
                                               messages=CLIENT_PER_MESSAGE.messages // fewer),
                           work))
    return results
