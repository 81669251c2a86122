"""Forwarding throughput against Postfix's smtp-sink.

* drain: ``emailrelay --as-client`` empties a spool of 2,000 10 KB messages;
* proxy: ``emailrelay --as-proxy`` with clients sending 1,000 10 KB messages, one SMTP
  connection each, from 4 threads, until the spool is empty again.

Messages per second and the relay's peak RSS (sampled with psutil).
"""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench.__main__ import Result
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool

SMTP_SINK = "/usr/sbin/smtp-sink"
DRAIN_MESSAGES = 2000
PROXY_MESSAGES = 1000
PROXY_CLIENTS = 4
BODY = (b"Subject: bench\r\n\r\n" + (b"0123456789" * 7 + b"abcdef\r\n") * 130)[:10 * 1024]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port}")


class _PeakRss:
    """Samples a process's RSS in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / (1 << 20)


def _sink() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([SMTP_SINK, "-u", "root", f"127.0.0.1:{port}", "256"],
                               stdout=subprocess.DEVNULL)
    _wait_port(port)
    return process, f"127.0.0.1:{port}"


def _relay(*args: str) -> list[str]:
    return [sys.executable, "-m", "emailrelay", "--user", "root", *args]


def bench_drain(work: Path, address: str) -> Result:
    spool = Spool(work / "drain")
    for i in range(DRAIN_MESSAGES):
        message = spool.new_message(Envelope(from_="bench@example.com",
                                             to_remote=[f"r{i}@example.com"]))
        message.write(BODY)
        message.commit_sync()
    started = time.perf_counter()
    process = subprocess.Popen(_relay("--as-client", address, "--spool-dir",
                                      str(spool.directory)), stderr=subprocess.DEVNULL)
    rss = _PeakRss(process.pid)
    code = process.wait()
    elapsed = time.perf_counter() - started
    peak = rss.stop()
    left = len(spool.ready())
    note = "" if code == 0 and not left else f"exit {code}, {left} left"
    return Result("forward: --as-client drain to smtp-sink", DRAIN_MESSAGES, elapsed, peak,
                  note)


def bench_proxy(work: Path, address: str) -> Result:
    spool_dir = work / "proxy"
    port = _free_port()
    process = subprocess.Popen(_relay("--as-proxy", address, "--no-daemon", "--port",
                                      str(port), "--interface", "127.0.0.1", "--spool-dir",
                                      str(spool_dir), "--log-file", os.devnull))
    try:
        _wait_port(port)
        rss = _PeakRss(process.pid)
        spool = Spool(spool_dir)

        def send(count: int) -> None:
            for _ in range(count):
                with smtplib.SMTP("127.0.0.1", port) as client:
                    client.sendmail("bench@example.com", ["to@example.com"], BODY)

        started = time.perf_counter()
        with ThreadPoolExecutor(PROXY_CLIENTS) as pool:
            list(pool.map(send, [PROXY_MESSAGES // PROXY_CLIENTS] * PROXY_CLIENTS))
        deadline = time.monotonic() + 120
        while any(True for _ in spool.entries()) and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        left = sum(1 for _ in spool.entries())
        return Result("forward: --as-proxy smtplib -> relay -> smtp-sink", PROXY_MESSAGES,
                      elapsed, rss.stop(), f"{left} left" if left else
                      f"{PROXY_CLIENTS} clients, a connection per message")
    finally:
        process.terminate()
        process.wait(20)


def run() -> list[Result]:
    if not Path(SMTP_SINK).exists():
        print("smtp-sink not installed (Debian package postfix): skipped", file=sys.stderr)
        return []
    sink, address = _sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return [bench_drain(Path(tmp), address), bench_proxy(Path(tmp), address)]
    finally:
        sink.terminate()
        sink.wait(10)
