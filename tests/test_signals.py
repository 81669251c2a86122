"""Signals with the real process: graceful stop (SIGTERM, SIGINT) and SIGHUP."""

from __future__ import annotations

import logging
import signal
import socket
import time
from pathlib import Path

import pytest

from emailrelay.app.reload import Reloadable, ReloadRegistry


class Client:
    """A raw SMTP client, to stop in the middle of things."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        assert self.reply().startswith("220 ")

    def reply(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError(f"closed; had {self.buffer!r}")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        reply = self.reply()
        while reply[3:4] == "-":
            reply = self.reply()
        return reply

    def start_data(self) -> None:
        assert self.command("EHLO client.example").startswith("250 ")
        assert self.command("MAIL FROM:<a@example.com>").startswith("250 ")
        assert self.command("RCPT TO:<b@example.net>").startswith("250 ")
        assert self.command("DATA").startswith("354 ")
        self.sock.sendall(b"Subject: half\r\n\r\nthe first half\r\n")

    def closed(self) -> bool:
        self.sock.settimeout(15)
        return self.sock.recv(100) == b""


def leftovers(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_transaction_in_progress_is_finished(start_relay, sig) -> None:
    relay = start_relay("--shutdown-grace", "10")
    client = Client(relay.port)
    client.start_data()
    relay.process.send_signal(sig)
    relay.wait_for_log(f"received signal {sig.name}: shutting down")
    time.sleep(0.3)
    client.sock.sendall(b"the second half\r\n.\r\n")
    assert client.reply() == "250 message processed"
    # then, between transactions, the session is told to go away
    assert client.reply() == "421 service shutting down"
    assert client.closed()
    assert relay.process.wait(10) == 0
    assert len(relay.envelopes()) == 1 and len(relay.contents()) == 1
    assert not relay.envelopes(".new")


def test_idle_sessions_end_at_once(start_relay) -> None:
    relay = start_relay("--shutdown-grace", "20")
    client = Client(relay.port)
    assert client.command("EHLO client.example").startswith("250 ")
    started = time.monotonic()
    relay.process.send_signal(signal.SIGTERM)
    assert client.reply() == "421 service shutting down"
    assert client.closed()
    assert relay.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "smtp connection closed: service shutting down" in relay.log()


def test_an_unfinished_message_is_removed_after_the_grace_period(start_relay) -> None:
    relay = start_relay("--shutdown-grace", "1")
    client = Client(relay.port)
    client.start_data()
    time.sleep(0.2)
    assert relay.contents()  # the content file is being written
    started = time.monotonic()
    relay.process.send_signal(signal.SIGTERM)
    assert client.reply() == "421 service shutting down"
    assert client.closed()
    assert relay.process.wait(10) == 0
    assert 0.8 < time.monotonic() - started < 6
    assert leftovers(relay.spool) == []  # never acknowledged, so nothing is kept


def test_new_connections_are_refused_while_stopping(start_relay) -> None:
    relay = start_relay("--shutdown-grace", "10")
    client = Client(relay.port)
    client.start_data()
    relay.process.send_signal(signal.SIGTERM)
    relay.wait_for_log("shutting down")
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    client.sock.sendall(b".\r\n")
    assert client.reply() == "250 message processed"
    assert relay.process.wait(10) == 0


def test_a_second_signal_stops_at_once(start_relay) -> None:
    relay = start_relay("--shutdown-grace", "60")
    client = Client(relay.port)
    client.start_data()
    relay.process.send_signal(signal.SIGTERM)
    relay.wait_for_log("shutting down")
    started = time.monotonic()
    relay.process.send_signal(signal.SIGTERM)
    assert relay.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert leftovers(relay.spool) == []


def test_sighup_reopens_the_log_file(start_relay, tmp_path: Path) -> None:
    log_file = tmp_path / "relay-file.log"
    relay = start_relay("--log-file", str(log_file))
    deadline = time.monotonic() + 10
    while "smtp server on" not in (log_file.read_text() if log_file.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rotated = tmp_path / "relay-file.log.1"
    log_file.rename(rotated)
    relay.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not log_file.exists():
        assert time.monotonic() < deadline, "no new log file after SIGHUP"
        time.sleep(0.05)
    Client(relay.port).command("QUIT")
    deadline = time.monotonic() + 10
    while "smtp connection from" not in log_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "received signal SIGHUP" in rotated.read_text()
    assert "smtp connection from" not in rotated.read_text().split("SIGHUP")[1]
    assert relay.process.poll() is None
    assert relay.stop() == 0


# -- the reload registry --------------------------------------------------------------------

def test_reload_keeps_the_old_object_when_the_new_one_is_broken(caplog, tmp_path) -> None:
    caplog.set_level(logging.INFO, logger="emailrelay")
    source = tmp_path / "secrets"
    source.write_text("one")

    def load() -> str:
        text = source.read_text()
        if "broken" in text:
            raise ValueError(f"{source}: line 1: broken")
        return text

    secrets = Reloadable("server secrets", load)
    other = Reloadable("certificate", lambda: "cert")
    registry = ReloadRegistry()
    registry.register(secrets)
    registry.register(other)
    source.write_text("two")
    assert registry.reload_all() == 0 and secrets.current == "two"
    source.write_text("broken")
    assert registry.reload_all() == 1
    assert secrets.current == "two" and other.current == "cert"
    assert "cannot reload the server secrets: " in caplog.text
    assert "still using the previous one" in caplog.text
    assert "reloaded the certificate" in caplog.text


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("emailrelay"), "propagate", True)
