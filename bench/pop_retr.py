"""POP3 RETR of a big message: throughput and the server's memory growth.

    python -m bench.pop_retr [size-in-MB]      (default 200)

A message of that size (LF line endings and dot-led lines, so the server has to
convert and byte-stuff) is put in a spool, the real program serves it over POP3 and
a client reads it to the end.  Prints the rate and how much the server's resident
memory grew, which must stay at a few MB whatever the message size.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from tests.support.relay import free_port, wait_for_port

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool

LINE = b".a line that starts with a dot, as some do, and is long enough to matter\n"


def make_message(spool: Spool, megabytes: int) -> int:
    msg = spool.new_message(Envelope(from_="a@example.com", to_remote=["b@example.com"]))
    block = b"Subject: big\n\n" + LINE * (1 << 20 // len(LINE))
    written = 0
    while written < megabytes << 20:
        msg.write(block)
        written += len(block)
    msg.commit_sync()
    return written


def peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        time.sleep(0.01)


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool")
        size = make_message(spool, megabytes)
        auth = Path(tmp) / "auth"
        auth.write_text("server plain bench bench\n")
        auth.chmod(0o600)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "emailrelay", "--no-daemon", "--user", "root", "--no-smtp",
             "--interface", "127.0.0.1", "--spool-dir", str(spool.directory), "--pop",
             "--pop-port", str(port), "--pop-auth", str(auth)])
        try:
            wait_for_port(port)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                reader = sock.makefile("rb")
                reader.readline()
                sock.sendall(b"USER bench\r\nPASS bench\r\n")
                reader.readline()
                reader.readline()  # the octet counts are worked out here, before RETR
                base = psutil.Process(server.pid).memory_info().rss
                stop, peak = threading.Event(), [base]
                watcher = threading.Thread(target=peak_rss, args=(server.pid, stop, peak))
                watcher.start()
                started = time.monotonic()
                sock.sendall(b"RETR 1\r\n")
                status = reader.readline()
                received, tail = 0, b""
                while not tail.endswith(b"\r\n.\r\n"):
                    chunk = reader.read1(1 << 20)
                    if not chunk:
                        raise ConnectionError("the server closed the connection")
                    received += len(chunk)
                    tail = (tail + chunk)[-5:]
                elapsed = time.monotonic() - started
                stop.set()
                watcher.join()
                sock.sendall(b"QUIT\r\n")
        finally:
            server.terminate()
            server.wait()
    print(f"stored {size / 1e6:.0f} MB, {status.decode().strip()}, received {received / 1e6:.0f} "
          f"MB (stuffed) in {elapsed:.2f} s = {received / 1e6 / elapsed:.0f} MB/s")
    print(f"server memory grew by {(peak[0] - base) / 1e6:.1f} MB during RETR")


if __name__ == "__main__":
    main()
