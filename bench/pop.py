"""POP3 serving.

* retr: RETR of one 200 MB message with LF line endings and dot-led lines (so the server
  converts and byte-stuffs every line), read to the end; the note gives the rate and
  how much the server's peak memory grew, which must stay at a few MB;
* login: USER/PASS on a maildrop of 2,000 10 KB messages (the server lists the maildrop
  and works out RFC 1939 sizes), then UIDL; the second login finds the sizes remembered.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from bench.common import (
    Program,
    Result,
    busy_note,
    emailrelay_argv,
    fill_spool,
    free_port,
    peak_rss_kb,
    settle,
)
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool

BIG = 200 << 20
LINE = b".a line that starts with a dot, as some do, and is long enough to matter\n"
LISTED = 2000
SIZE = 10 * 1024


def _store(spool: Spool, chunks: list[bytes]) -> None:
    message = spool.new_message(Envelope(from_="bench@example.com",
                                         to_remote=["sink@example.com"]))
    for chunk in chunks:
        message.write(chunk)
    message.commit_sync()


def _server(work: Path, spool: Spool) -> Program:
    auth = work / "pop.auth"
    auth.write_text("server plain bench bench\n")
    auth.chmod(0o600)
    port = free_port()
    return Program(emailrelay_argv(free_port(), spool.directory, "--pop", "--pop-port",
                                   str(port), "--pop-auth", str(auth)), port, work / "log")


class _Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        self.file.readline()

    def ask(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.file.readline()

    def multiline(self, line: bytes) -> int:
        """Send a command with a multi-line answer; read it all; return its size."""
        self.ask(line)
        received, tail = 0, b""
        while not tail.endswith(b"\r\n.\r\n"):
            chunk = self.file.read1(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            received += len(chunk)
            tail = (tail + chunk)[-5:]
        return received

    def close(self) -> None:
        self.ask(b"QUIT")
        self.file.close()
        self.sock.close()


def bench_retr(work: Path) -> Result:
    spool = Spool(work / "retr")
    block = LINE * ((1 << 20) // len(LINE))
    _store(spool, [b"Subject: big\n\n"] + [block] * (BIG // len(block)))
    busy = settle()
    server = _server(work, spool)
    try:
        client = _Client(server.port)
        client.ask(b"USER bench")
        client.ask(b"PASS bench")
        before = peak_rss_kb(server.process.pid)
        started = time.perf_counter()
        received = client.multiline(b"RETR 1")
        seconds = time.perf_counter() - started
        growth = peak_rss_kb(server.process.pid) - before
        client.close()
    finally:
        server.stop()
    note = f"{received / seconds / 1e6:.0f} MB/s sent, peak RSS +{growth / 1024:.1f} MB"
    if busy_note(busy):
        note += f", {busy_note(busy)}"
    return Result("pop: retr 200 MB", messages=1, seconds=seconds, note=note)


def bench_login(work: Path, listed: int) -> list[Result]:
    spool = Spool(work / "login")
    fill_spool(spool.directory, listed, SIZE)
    settle()
    server = _server(work, spool)
    results = []
    try:
        for name in ("pop: login+uidl, first", "pop: login+uidl, again"):
            client = _Client(server.port)
            started = time.perf_counter()
            client.ask(b"USER bench")
            client.ask(b"PASS bench")
            client.multiline(b"UIDL")
            seconds = time.perf_counter() - started
            client.close()
            results.append(Result(name, messages=listed, seconds=seconds,
                                  note="msg/s: messages listed per second"))
    finally:
        server.stop()
    return results


def run(work: Path, quick: bool = False) -> list[Result]:
    return [bench_retr(work), *bench_login(work, LISTED // 4 if quick else LISTED)]
