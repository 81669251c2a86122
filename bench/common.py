"""Shared pieces for the benchmarks: starting programs, load clients, measuring memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.relay import free_port, wait_for_port

__all__ = ["free_port", "wait_for_port"]


@dataclass
class Result:
    name: str
    messages: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, final dot to 250
    peak_rss_kb: int | None = None
    note: str = ""

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
        return [self.name, f"{self.messages}", f"{self.rate:,.0f}",
                "-" if p50 is None else f"{p50 * 1000:.2f}",
                "-" if p99 is None else f"{p99 * 1000:.2f}",
                "-" if self.peak_rss_kb is None else f"{self.peak_rss_kb / 1024:.1f}", self.note]


HEADERS = ["benchmark", "messages", "msg/s", "p50 ms", "p99 ms", "peak RSS MB", "note"]


def table(results: list[Result]) -> str:
    rows = [HEADERS] + [r.row() for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
        with contextlib.suppress(FileNotFoundError):
            total += peak_rss_kb(child.pid)
    return total


class Program:
    """A server process started for a benchmark."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self._log = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(port)

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


def make_message(size: int) -> bytes:
    head = b"From: bench@example.com\r\nTo: sink@example.com\r\nSubject: bench\r\n\r\n"
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = line * max(1, (size - len(head)) // len(line) + 1)
    return head + body[: max(0, size - len(head))]


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def smtp_client(port: int, count: int, message: bytes, latencies: list[float],
                      per_connection: bool = False) -> int:
    """Send ``count`` messages; MAIL/RCPT/DATA pipelined; returns how many got 250."""
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
        writer.write(data)
        started = time.perf_counter()
        reply = await _reply(reader)
        latencies.append(time.perf_counter() - started)
        if reply.startswith(b"250"):
            sent += 1
        if per_connection:
            writer.write(b"QUIT\r\n")
            await _reply(reader)
            writer.close()
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


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def cpu_count() -> int:
    return os.cpu_count() or 1
