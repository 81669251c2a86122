"""Soak: an hour of mixed load on one relay, sampled every minute, plotted as a PNG.

``python -m bench soak`` (or ``make soak``).  One relay stores and forwards to Postfix's
smtp-sink (``--forward-on-disconnect --poll``) and serves POP3 on the same spool
(``--pop-no-delete``).  The load, bounded in count and time and sent only to 127.0.0.1:

* SMTP clients that each send one to five messages of 2 KB to 256 KB (one in fifty is
  2 MB) per connection, then QUIT;
* a POP3 client that logs in every few seconds, lists, reads the first message and quits;
* misbehaving clients: garbage commands, a drop half-way through DATA, a silent connection.

Every ``SOAK_INTERVAL`` seconds (60) the relay's resident memory and open file descriptors
(the process and any children) and the latency from the final dot to the 250 over that
interval are recorded.  ``SOAK_SECONDS`` (3600) is the length of the run; the figures go to
``SOAK_OUTPUT`` (``bench/results``) as ``soak.csv`` and ``soak.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    EMAILRELAY,
    SMTP_SINK,
    Program,
    Result,
    emailrelay_argv,
    free_port,
    make_message,
    smtp_client,
)
from bench.forward import smtp_sink

SECONDS = float(os.environ.get("SOAK_SECONDS", "3600"))
INTERVAL = float(os.environ.get("SOAK_INTERVAL", "60"))
OUTPUT = Path(os.environ.get("SOAK_OUTPUT", Path(__file__).parent / "results"))
SMTP_CLIENTS = 4
PAUSE = 0.2  # seconds between one client's connections


@dataclass
class Sample:
    minute: float
    rss_mb: float
    open_files: int
    p50_ms: float
    p99_ms: float
    messages: int
    pop_sessions: int
    spooled: int


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    messages: int = 0
    pop_sessions: int = 0
    abuse: int = 0
    errors: list[str] = field(default_factory=list)


def _tree(pid: int) -> list[int]:
    import psutil
    with contextlib.suppress(psutil.Error):
        return [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    return [pid]


def rss_and_files(pid: int) -> tuple[float, int]:
    import psutil
    rss, files = 0, 0
    for each in _tree(pid):
        with contextlib.suppress(psutil.Error, FileNotFoundError):
            rss += psutil.Process(each).memory_info().rss
            files += len(os.listdir(f"/proc/{each}/fd"))
    return rss / (1 << 20), files


async def smtp_load(port: int, load: Load, stop: float, rng: random.Random) -> None:
    while time.monotonic() < stop:
        size = 2 << 20 if rng.random() < 0.02 else rng.randint(2048, 256 << 10)
        try:
            load.messages += await smtp_client(port, rng.randint(1, 5), make_message(size),
                                               load.latencies, per_connection=True)
        except (OSError, ConnectionError) as e:
            load.errors.append(f"smtp: {e}")
        await asyncio.sleep(PAUSE)


async def pop_load(port: int, load: Load, stop: float) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                          limit=8 << 20)
            await reader.readline()
            for command in (b"USER soak", b"PASS soak", b"STAT"):
                writer.write(command + b"\r\n")
                reply = await reader.readline()
            if int(reply.split()[1]) > 0:
                writer.write(b"RETR 1\r\n")
                if (await reader.readline()).startswith(b"+OK"):
                    await reader.readuntil(b"\r\n.\r\n")
            writer.write(b"QUIT\r\n")
            await reader.readline()
            writer.close()
            load.pop_sessions += 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            load.errors.append(f"pop: {e!r}")
        await asyncio.sleep(3)


async def abuse_load(port: int, load: Load, stop: float, rng: random.Random) -> None:
    """Clients that go wrong: the relay must not keep anything of theirs."""
    while time.monotonic() < stop:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readline()
            kind = rng.choice(["garbage", "drop-in-data", "silent"])
            if kind == "garbage":
                writer.write(b"FOO\r\nMAIL FROM:<\r\nRCPT TO:<>\r\n" + b"x" * 3000 + b"\r\n")
                await writer.drain()
            elif kind == "drop-in-data":
                writer.write(b"EHLO soak\r\nMAIL FROM:<a@example.com>\r\n"
                             b"RCPT TO:<b@example.com>\r\nDATA\r\n")
                await writer.drain()
                for _ in range(4):
                    await reader.readline()
                writer.write(b"Subject: cut\r\n\r\n" + b"half a message\r\n" * 500)
                await writer.drain()
            else:
                await asyncio.sleep(5)
            writer.close()
            load.abuse += 1
        await asyncio.sleep(2)


async def sampler(pid: int, spool: Path, load: Load, samples: list[Sample], started: float,
                  stop: float) -> None:
    seen = 0
    while True:
        now = time.monotonic()
        window = sorted(load.latencies[seen:])
        seen = len(load.latencies)
        rss, files = rss_and_files(pid)

        def pick(p: float, window: list[float] = window) -> float:
            return window[min(len(window) - 1, int(p * len(window)))] * 1000 if window else 0

        samples.append(Sample(round((now - started) / 60, 2), round(rss, 1), files,
                              round(pick(0.5), 2), round(pick(0.99), 2), load.messages,
                              load.pop_sessions, sum(1 for _ in spool.glob("*.envelope"))))
        print(f"soak: {samples[-1]}", flush=True)
        if now >= stop:
            return
        await asyncio.sleep(min(INTERVAL, max(0.0, stop - now)))


async def soak(smtp_port: int, pop_port: int, pid: int, spool: Path) -> tuple[Load,
                                                                               list[Sample]]:
    load, samples = Load(), []
    rng = random.Random(11)
    started = time.monotonic()
    stop = started + SECONDS
    await asyncio.gather(
        *(smtp_load(smtp_port, load, stop, random.Random(rng.random()))
          for _ in range(SMTP_CLIENTS)),
        pop_load(pop_port, load, stop), abuse_load(smtp_port, load, stop, rng),
        sampler(pid, spool, load, samples, started, stop))
    return load, samples


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    minutes = [s.minute for s in samples]
    figure, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot(minutes, [s.rss_mb for s in samples], marker=".")
    axes[0].set_ylabel("resident memory (MB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(minutes, [s.open_files for s in samples], marker=".", color="tab:green")
    axes[1].set_ylabel("open file descriptors")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(minutes, [s.p50_ms for s in samples], marker=".", label="p50")
    axes[2].plot(minutes, [s.p99_ms for s in samples], marker=".", label="p99")
    axes[2].set_ylabel("final dot to 250 (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    figure.suptitle(f"emailrelay soak: {samples[-1].messages:,} messages, "
                    f"{samples[-1].pop_sessions:,} POP3 sessions")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def run(work: Path, quick: bool = False) -> list[Result]:
    """``quick`` changes nothing: ``SOAK_SECONDS`` sets the length."""
    if not Path(SMTP_SINK).exists():
        return [Result("soak", note="skipped: smtp-sink not installed (package postfix)")]
    with smtp_sink() as (sink_port, _):
        return _soak(work, f"127.0.0.1:{sink_port}")


def _soak(work: Path, address: str) -> list[Result]:
    spool = work / "spool"
    auth = work / "pop.auth"
    auth.write_text("server plain soak soak\n")
    auth.chmod(0o600)
    smtp_port, pop_port = free_port(), free_port()
    relay = Program(emailrelay_argv(smtp_port, spool, "--forward-to", address,
                                    "--forward-on-disconnect", "--poll", "30", "--pop",
                                    "--pop-port", str(pop_port), "--pop-auth", str(auth),
                                    "--pop-no-delete", "--idle-timeout", "10",
                                    "--log-file", str(work / "relay.log")),
                    smtp_port, work / "relay.out")
    try:
        load, samples = asyncio.run(soak(smtp_port, pop_port, relay.process.pid, spool))
    finally:
        relay.stop()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT / "soak.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Sample.__dataclass_fields__)
        writer.writerows([list(vars(s).values()) for s in samples])
    plot(samples, OUTPUT / "soak.png")
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    note = (f"RSS {first.rss_mb:.0f}->{last.rss_mb:.0f} MB (max "
            f"{max(s.rss_mb for s in samples):.0f}), fds {first.open_files}->"
            f"{last.open_files} (max {max(s.open_files for s in samples)}), "
            f"{load.pop_sessions} POP3 sessions, {load.abuse} abusive clients, "
            f"{len(load.errors)} client errors")
    if load.errors:
        print("soak: first client errors:", *load.errors[:5], sep="\n  ")
    return [Result(f"soak {SECONDS / 60:.0f} min mixed load", EMAILRELAY, load.messages,
                   SECONDS, load.latencies, None, note)]
