"""Small helpers for filter and verifier tests: scripts, spools, real DNS and spamd."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import NewMessage, Spool
from tests.support.relay import ROOT, free_port, wait_for_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CONTENT = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def script(directory: Path, name: str, body: str, interpreter: str = "/bin/sh") -> Path:
    """Write an executable script (``interpreter`` may be a python path)."""
    path = directory / name
    path.write_text(f"#!{interpreter}\n{body.lstrip()}")
    path.chmod(0o755)
    return path


def new_message(spool: Spool, envelope: Envelope | None = None,
                content: bytes = CONTENT) -> NewMessage:
    """A message flushed as .envelope.new, as the server has it when --filter runs."""
    message = spool.new_message(envelope or Envelope(from_="a@example.com",
                                                     to_remote=["b@example.net"]))
    message.write(content)
    message.prepare_sync()
    return message


def stored_message(spool: Spool, envelope: Envelope | None = None,
                   content: bytes = CONTENT) -> str:
    """A ready message in the spool; returns its id."""
    message = new_message(spool, envelope, content)
    message._publish()
    return message.id


class Daemon:
    """A test peer program running in the background, logging to a file."""

    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def start(self, argv: list[str], log_path: Path) -> None:
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Spamd(Daemon):
    """SpamAssassin's spamd on a free loopback port (module fixture material)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.start([shutil.which("spamd") or "spamd", "--listen", f"127.0.0.1:{self.port}",
                    "--max-children", "2", "--nouser-config", "--local", "--syslog", "stderr",
                    "--pidfile", str(tmp / "spamd.pid")], tmp / "spamd.log")
        wait_for_port(self.port, timeout=60)


class Dnsmasq(Daemon):
    """Debian's dnsmasq answering for made-up names on a free loopback UDP port."""

    def __init__(self, tmp: Path, records: list[str]) -> None:
        self.port = _free_udp_port()
        self.start([shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground",
                    "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                    "--bind-interfaces", "--listen-address=127.0.0.1", "--port",
                    str(self.port), "--pid-file=", "--user=root", "--log-queries",
                    "--log-facility=-", *records], tmp / "dnsmasq.log")
        self._wait()

    def _wait(self) -> None:
        import dns.message
        import dns.query
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("dnsmasq exited: " + Path(self.log.name).read_text())
            try:
                dns.query.udp(dns.message.make_query("probe.test", "A"), "127.0.0.1",
                              port=self.port, timeout=0.3)
                return
            except Exception:
                time.sleep(0.05)
        raise TimeoutError("dnsmasq did not answer")


def _free_udp_port() -> int:
    """A loopback port free for UDP and TCP alike (dnsmasq listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


FAIL2BAN_COMMON = Path("/etc/fail2ban/filter.d/common.conf")
OUR_FAIL2BAN_FILTER = ROOT / "packaging" / "fail2ban" / "emailrelay.conf"


def skip_without_fail2ban() -> None:
    if shutil.which("fail2ban-regex") is None or not FAIL2BAN_COMMON.exists():
        pytest.skip("fail2ban is not installed")


def fail2ban_matches(log: Path, work: Path, filter_text: str | None = None) -> list[str]:
    """The addresses ``fail2ban-regex`` finds in ``log`` with our shipped filter, or with
    the filter given as text (skips the test when fail2ban is not installed)."""
    skip_without_fail2ban()
    filters = work / "filter.d"
    filters.mkdir(exist_ok=True)
    shutil.copy(FAIL2BAN_COMMON, filters)
    chosen = filters / ("given.conf" if filter_text is not None else "ours.conf")
    if filter_text is not None:
        chosen.write_text(filter_text)
    else:
        shutil.copy(OUR_FAIL2BAN_FILTER, chosen)
    done = subprocess.run(["fail2ban-regex", "-o", "ip", str(log), str(chosen)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()
