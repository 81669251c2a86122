"""Forwarding throughput against Postfix's smtp-sink.

* drain: ``emailrelay --as-client`` empties a spool of 2,000 10 KB messages;
* proxy: ``emailrelay --as-proxy`` takes 1,000 10 KB messages from 8 pipelining clients
  and forwards them, timed until the spool is empty again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    Program,
    Result,
    emailrelay_argv,
    free_port,
    load,
    make_message,
    tree_peak_rss_kb,
    wait_for_port,
)
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool

SMTP_SINK = "/usr/sbin/smtp-sink"
DRAIN_MESSAGES = 2000
PROXY_CLIENTS = 8
PROXY_PER_CLIENT = 125
SIZE = 10 * 1024


def _sink() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([SMTP_SINK, "-u", "root", f"127.0.0.1:{port}", "256"],
                               stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"127.0.0.1:{port}"


def _peak_rss_of_run(process: subprocess.Popen[bytes]) -> int:
    """Peak RSS of a process that is about to exit: wait4 reports it in its rusage."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss


def bench_drain(work: Path, address: str) -> Result:
    spool = Spool(work / "drain")
    body = make_message(SIZE)
    for i in range(DRAIN_MESSAGES):
        message = spool.new_message(Envelope(from_="bench@example.com",
                                             to_remote=[f"r{i}@example.com"]))
        message.write(body)
        message.commit_sync()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "emailrelay", "--user", "root",
                                "--as-client", address, "--spool-dir", str(spool.directory)],
                               stderr=subprocess.DEVNULL)
    peak = _peak_rss_of_run(process)
    elapsed = time.perf_counter() - started
    left = len(spool.ready())
    note = "" if process.returncode == 0 and not left else (
        f"exit {process.returncode}, {left} left")
    return Result("forward --as-client drain to smtp-sink", DRAIN_MESSAGES, elapsed,
                  peak_rss_kb=peak, note=note)


def bench_proxy(work: Path, address: str) -> Result:
    spool_dir = work / "proxy"
    port = free_port()
    program = Program(emailrelay_argv(port, spool_dir, "--as-proxy", address, "--log-file",
                                      os.devnull), port, work / "proxy.log")
    try:
        spool = Spool(spool_dir)
        started = time.perf_counter()
        sent, _, latencies = asyncio.run(load(port, PROXY_CLIENTS, PROXY_PER_CLIENT,
                                              make_message(SIZE)))
        deadline = time.monotonic() + 120
        while any(True for _ in spool.entries()) and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        left = sum(1 for _ in spool.entries())
        return Result("forward --as-proxy end to end to smtp-sink", sent, elapsed, latencies,
                      tree_peak_rss_kb(program.process.pid),
                      f"{left} left" if left else f"{PROXY_CLIENTS} clients")
    finally:
        program.stop()


def run(work: Path) -> list[Result]:
    if not Path(SMTP_SINK).exists():
        return [Result("forward", note="skipped: smtp-sink not installed (package postfix)")]
    sink, address = _sink()
    try:
        return [bench_drain(work, address), bench_proxy(work, address)]
    finally:
        sink.terminate()
        sink.wait(10)
