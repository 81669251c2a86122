"""Shared pieces for the benchmarks: servers under test, load generators, memory, the table."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.relay import free_port, wait_for_port

from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool

__all__ = ["free_port", "wait_for_port"]

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
KB, MB = 1024, 1024 * 1024
EMAILRELAY, AIOSMTPD, SINK = "emailrelay", "aiosmtpd 1.4.6", "smtp-sink"


@dataclass
class Result:
    name: str  # what was measured: the load, or the job
    server: str = EMAILRELAY
    messages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, final dot to 250
    peak_rss_kb: int | None = None
    note: str = ""
    figures: dict[str, float] = field(default_factory=dict)  # more, for the targets

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def row(self) -> list[str]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return [self.name, self.server, f"{self.messages:,}" if self.messages else "-",
                f"{self.seconds:.2f}" if self.seconds else "-",
                "-" if not (self.messages and self.seconds) else
                f"{self.rate:,.0f}" if self.rate >= 10 else f"{self.rate:.2f}",
                "-" if p50 is None else f"{p50 * 1000:.2f}",
                "-" if p99 is None else f"{p99 * 1000:.2f}",
                "-" if self.peak_rss_kb is None else f"{self.peak_rss_kb / 1024:.1f}", self.note]


HEADERS = ["benchmark", "server", "messages", "seconds", "msg/s", "p50 ms", "p99 ms",
           "peak RSS MB", "note"]


def table(results: list[Result]) -> str:
    rows = [HEADERS] + [r.row() for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


# -- a quiet machine -----------------------------------------------------------------------

def _meminfo_kb(*keys: str) -> int:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return sum(values.get(k, 0) for k in keys)


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


_spools = itertools.count(1)


def fresh_spool(work: Path, name: str) -> Path:
    """A new, empty spool directory for one run, never one emptied by an earlier run.

    On ext4 without a journal (this VM's root file system) creating a file skips every
    free inode of the group deleted in the last minute or more (the kernel's
    ``recently_deleted``): right after an earlier run's spool is removed, each create
    scans thousands of them, and the relay spends two thirds of its time in the kernel.
    Old spools stay until the whole run ends.
    """
    spool = work / f"{name}-{next(_spools)}"
    spool.mkdir()
    return spool


def settle(pause: float = 1.0) -> float:
    """Write back everything pending, wait a moment; return how busy the CPUs were then.

    Dirty pages left by an earlier run make this VM's disk slow to create files (45 us
    became 900 us per file), so every run starts after ``sync`` has emptied the queue.
    The share of CPU time others used during the pause is returned, so that a run on a
    busy machine says so.
    """
    deadline = time.monotonic() + 60
    os.sync()
    while _meminfo_kb("Dirty", "Writeback") > 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
        os.sync()
    busy0, total0 = _cpu_times()
    time.sleep(pause)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def busy_note(busy: float) -> str:
    """A warning for the note column when others used the CPUs just before a run."""
    return f"machine {busy:.0%} busy before the run" if busy > 0.15 else ""


# -- servers under test --------------------------------------------------------------------

def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def tree_peak_rss_kb(pid: int) -> int:
    """Peak RSS of a process plus its children (worker processes)."""
    import psutil
    total = peak_rss_kb(pid)
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += peak_rss_kb(child.pid)
    return total


def wait_for_greeting(port: int, timeout: float = 10.0, poll: float = 0.002) -> tuple[float,
                                                                                     float]:
    """Seconds (perf_counter) when a connection was first accepted and first greeted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                accepted = time.perf_counter()
                s.recv(512)
                return accepted, time.perf_counter()
        except OSError:
            time.sleep(poll)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Program:
    """A server process started for a benchmark; ``startup`` is fork to first greeting."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self._log = open(log, "wb")  # noqa: SIM115
        started = time.perf_counter()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            accepted, greeted = wait_for_greeting(port)
        except TimeoutError:
            self.stop()
            raise
        self.listening, self.startup = accepted - started, greeted - started

    def peak_rss_kb(self) -> int:
        return tree_peak_rss_kb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def emailrelay_argv(port: int, spool: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emailrelay", "--no-daemon", "--user", "root",
            "--no-syslog", "--interface", "127.0.0.1", "--port", str(port),
            "--spool-dir", str(spool), *extra]


def aiosmtpd_argv(port: int, spool: Path) -> list[str]:
    return [sys.executable, "-m", "bench.aiosmtpd_server", str(spool), str(port)]


def sink_argv(port: int) -> list[str]:
    return [SMTP_SINK, "-u", "root", f"127.0.0.1:{port}", "256"]


def postfix_missing() -> str:
    """Why the Postfix test programs cannot be used, or ``""``."""
    missing = [p for p in (SMTP_SINK, SMTP_SOURCE) if not Path(p).exists()]
    return f"skipped: {', '.join(missing)} not installed (package postfix)" if missing else ""


def spooled(spool: Path) -> int:
    """Envelopes in a spool, in any state (new, waiting, being forwarded, failed)."""
    return sum(1 for name in os.listdir(spool) if Spool.parse_name(name))


def wait_until_empty(spool: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while spooled(spool) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not spooled(spool)


def run_to_exit(argv: list[str]) -> tuple[int, float, int]:
    """Run a program; (exit code, seconds, peak RSS in KB).

    The peak is read from /proc while it runs: the ``ru_maxrss`` that wait4 reports
    would count this (large) benchmark process, which the child was forked from.
    """
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            peak = max(peak, peak_rss_kb(process.pid))
        time.sleep(0.005)
    return process.returncode, time.perf_counter() - started, peak


# -- messages and load ---------------------------------------------------------------------

def make_message(size: int) -> bytes:
    head = b"From: bench@example.com\r\nTo: sink@example.com\r\nSubject: bench\r\n\r\n"
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = line * max(1, (size - len(head)) // len(line) + 1)
    return head + body[: max(0, size - len(head))]


def fill_spool(directory: Path, count: int, size: int, batch: int = 64) -> None:
    """``count`` durable messages of ``size`` bytes, written as the relay writes them."""
    spool = Spool(directory)
    body = make_message(size)

    async def one(i: int, committer: GroupCommitter) -> None:
        message = spool.new_message(Envelope(from_="bench@example.com",
                                             to_remote=[f"r{i}@example.com"]))
        message.write(body)
        await message.commit(committer)

    async def fill() -> None:
        committer = GroupCommitter()
        try:
            for start in range(0, count, batch):
                await asyncio.gather(*(one(i, committer)
                                       for i in range(start, min(count, start + batch))))
        finally:
            committer.close()

    asyncio.run(fill())


def smtp_source(port: int, messages: int, size: int, sessions: int = 8,
                reuse: bool = True) -> float:
    """Postfix's smtp-source: ``messages`` of ``size`` bytes over ``sessions`` parallel
    sessions, each reused for many messages (``-d``) or one connection per message;
    returns the seconds it took.  It neither pipelines nor measures latency."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-M", "bench.example", "-f", "bench@example.com", "-t", "sink@example.com",
            *(["-d"] if reuse else []), f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def smtp_client(port: int, count: int, message: bytes, latencies: list[float],
                      per_connection: bool = False) -> int:
    """Send ``count`` messages; MAIL/RCPT/DATA pipelined; returns how many got 250.

    The latency is the time from writing the final dot to reading the 250."""
    sent = 0
    reader = writer = None
    data = message.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
    for _ in range(count):
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await _reply(reader)
            writer.write(b"EHLO bench.example\r\n")
            await _reply(reader)
        assert reader is not None
        writer.write(b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n")
        for _ in range(3):
            await _reply(reader)
        if len(data) > 1 * MB:  # a large message: all but the final dot first
            writer.write(data[:-3])
            await writer.drain()
            data_end = data[-3:]
        else:
            data_end = data
        writer.write(data_end)
        started = time.perf_counter()
        reply = await _reply(reader)
        latencies.append(time.perf_counter() - started)
        if reply.startswith(b"250"):
            sent += 1
        if per_connection:
            writer.write(b"QUIT\r\n")
            await _reply(reader)
            writer.close()
            await writer.wait_closed()
            writer = None
    if writer is not None:
        writer.write(b"QUIT\r\n")
        writer.close()
    return sent


async def load(port: int, connections: int, per_client: int, message: bytes,
               per_connection: bool = False) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    counts = await asyncio.gather(*(smtp_client(port, per_client, message, latencies,
                                                per_connection)
                                    for _ in range(connections)))
    return sum(counts), time.perf_counter() - started, latencies
