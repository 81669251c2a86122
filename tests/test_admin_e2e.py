"""The admin interface of the real relay: every command over a socket, nc and telnet."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import time

import pytest

from emailrelay.spool.store import Spool
from tests.support.admin import PROMPT, AdminClient
from tests.support.capture import CaptureServer
from tests.support.relay import free_port
from tests.test_metrics import scrape

MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


def send_mail(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE)


@pytest.fixture
def relay_with_admin(start_relay):
    admin_port = free_port()
    relay = start_relay("--admin", str(admin_port), "--admin-terminate", "--size", "2000")
    relay.admin_port = admin_port
    return relay


def test_every_command(relay_with_admin) -> None:
    relay = relay_with_admin
    admin = AdminClient(relay.admin_port)
    help_text = admin.command("help")
    assert help_text == ("commands: dnsbl, failures, flush, forward, help, info, list, notify, "
                         "pid, quit, smtp, status, terminate, unfail-all")
    assert admin.command("list") == "<none>"
    assert admin.command("failures") == "<none>"
    assert admin.command("pid") == str(relay.process.pid)
    assert admin.command("info version").startswith("2.6")
    assert admin.command("info") == "usage: info {copyright|credit|version|warranty}"
    assert admin.command("forward") == "error: no remote server configured: use --forward-to"
    assert admin.command("flush") == "error: no remote server configured: use --forward-to"
    assert admin.command("dnsbl stop 60") == "OK"
    assert admin.command("dnsbl start") == "OK"
    assert admin.command("") == ""
    assert admin.command("nonsense") == "error: unrecognised command"

    status = admin.command("status").split("\n")
    assert f"LISTEN: 127.0.0.1:{relay.port}" in status
    assert f"LISTEN: 127.0.0.1:{relay.admin_port}" in status
    # the Relay helper's readiness probe was the first connection
    assert status[2:6] == ["OUT started: 0", "OUT finished: 0", "IN started: 2",
                           "IN finished: 1"]
    local, peer = admin.sock.getsockname(), admin.sock.getpeername()
    assert f"IN: 127.0.0.1:{peer[1]} <- 127.0.0.1:{local[1]}" in status

    send_mail(relay.port)
    send_mail(relay.port)
    ids = sorted(p.name.removesuffix(".envelope") for p in relay.envelopes())
    assert admin.command("list").split("\n") == ids
    spool = Spool(relay.spool)
    locked = spool.lock(ids[0])
    assert locked is not None
    locked.fail("tested", 550)
    assert admin.command("failures") == ids[0]
    assert admin.command("list") == ids[1]
    assert admin.command("unfail-all") == ""
    assert admin.command("failures") == "<none>"
    assert admin.command("list").split("\n") == ids
    status = admin.command("status").split("\n")
    assert "IN started: 4" in status and "IN finished: 3" in status

    admin.send("quit")
    assert admin.closed()
    relay.wait_for_log(f"admin connection closed: 127.0.0.1:{local[1]}")


def test_smtp_disable_and_enable(relay_with_admin) -> None:
    relay = relay_with_admin
    admin = AdminClient(relay.admin_port)
    assert admin.command("smtp disable") == "OK"
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", relay.port, timeout=10)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (421,
                                                                   b"service not available")
    assert admin.command("smtp enable") == "OK"
    send_mail(relay.port)
    assert len(relay.envelopes()) == 1


def test_a_session_started_before_disable_may_finish(relay_with_admin) -> None:
    relay = relay_with_admin
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.ehlo()
        admin = AdminClient(relay.admin_port)
        assert admin.command("smtp disable") == "OK"
        code, text = smtp.mail("a@example.com")
        assert (code, text) == (250, b"sender <a@example.com> OK")


def test_notify_events_as_mail_arrives(relay_with_admin) -> None:
    relay = relay_with_admin
    admin = AdminClient(relay.admin_port)
    admin.send("notify")
    time.sleep(0.2)
    send_mail(relay.port)
    (envelope,) = relay.envelopes()
    message_id = envelope.name.removesuffix(".envelope")
    stored = f"\r\nEVENT: server: stored: {message_id}  "
    events = admin.read_until(stored.encode()).decode()
    # (the Relay helper's readiness probe may end after "notify": skip its "stop")
    assert events.endswith("\r\nEVENT: network: in: start  " + stored)
    assert admin.read_until(b"  ") == b"\r\nEVENT: network: in: stop  "
    # a message refused for its size is an event too
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp, \
            pytest.raises(smtplib.SMTPSenderRefused):
        smtp.sendmail("a@example.com", ["b@example.net"], "x" * 3000)
    events = admin.read_until(b"EVENT: network: in: stop  ").decode()
    assert "\r\nEVENT: server: rejected: size  " in events
    # and the connection still takes commands
    assert admin.command("list") == message_id


def test_terminate(relay_with_admin) -> None:
    relay = relay_with_admin
    admin = AdminClient(relay.admin_port)
    peer_port = admin.sock.getsockname()[1]
    admin.send("terminate")
    assert relay.process.wait(15) == 0
    assert f"received a terminate command from 127.0.0.1:{peer_port}" in relay.log()


def test_terminate_needs_admin_terminate(start_relay) -> None:
    admin_port = free_port()
    relay = start_relay("--admin", str(admin_port))
    admin = AdminClient(admin_port)
    assert "terminate" not in admin.command("help")
    assert admin.command("terminate") == "error: unrecognised command"
    assert relay.process.poll() is None


def test_admin_on_its_own_interface(start_relay) -> None:
    admin_port = free_port()
    relay = start_relay("--interface", "smtp=127.0.0.1,admin=127.0.0.2", "--admin",
                        str(admin_port))
    assert AdminClient(admin_port, host="127.0.0.2").command("pid") == str(relay.process.pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", admin_port), timeout=5)
    relay.wait_for_log(f"admin server on 127.0.0.2:{admin_port}")


def test_with_nc(relay_with_admin) -> None:
    relay = relay_with_admin
    send_mail(relay.port)
    (envelope,) = relay.envelopes()
    done = subprocess.run([shutil.which("nc") or "nc", "-N", "127.0.0.1",
                           str(relay.admin_port)], input=b"help\nlist\nquit\n",
                          capture_output=True, timeout=20)
    out = done.stdout.decode()
    assert out.startswith("commands: dnsbl, failures, flush")
    assert f"\n{PROMPT.decode()}{envelope.name.removesuffix('.envelope')}\n" in out
    assert "\r" not in out  # nc sends bare LF, so that is what comes back


def test_with_telnet(relay_with_admin) -> None:
    relay = relay_with_admin
    script = "sleep 0.3; printf 'pid\\r\\n'; sleep 0.3; printf 'quit\\r\\n'; sleep 0.5"
    done = subprocess.run(f"({script}) | {shutil.which('telnet') or 'telnet'} 127.0.0.1 "
                          f"{relay.admin_port}", shell=True, capture_output=True, timeout=30)
    out = done.stdout.decode().replace("\r\n", "\n")  # telnet's own output drops the CR
    assert f"Connected to 127.0.0.1.\nEscape character is '^]'.\n{relay.process.pid}\n" \
        f"{PROMPT.decode()}" in out
    relay.wait_for_log("admin connection closed: 127.0.0.1:")
    assert "admin connection closed: disconnected" not in relay.log()  # it was "quit"


def test_forward_and_flush_with_a_smarthost(start_relay) -> None:
    admin_port, metrics_port = free_port(), free_port()
    with CaptureServer() as smarthost:
        relay = start_relay("--admin", str(admin_port), "--metrics-port", str(metrics_port),
                            "--forward-to", f"127.0.0.1:{smarthost.port}")
        watcher = AdminClient(admin_port)
        watcher.send("notify")
        admin = AdminClient(admin_port)
        send_mail(relay.port)
        send_mail(relay.port)
        ids = sorted(p.name.removesuffix(".envelope") for p in relay.envelopes())
        assert admin.command("flush") == "OK"  # only once both went
        assert len(smarthost.handler.messages) == 2
        assert admin.command("list") == "<none>"
        assert admin.command("flush") == "error: no messages to send"
        events = watcher.read_until(b"EVENT: client: forward: end  ").decode()
        assert "EVENT: client: forward: start: admin  " in events
        for message_id in ids:
            assert f"EVENT: client: sending: {message_id}  " in events
            assert f"EVENT: client: sent: {message_id}  " in events
        # "forward" asks for a run in the background
        send_mail(relay.port)
        assert admin.command("forward") == "OK"
        watcher.read_until(b"EVENT: client: forward: end  ")
        assert len(smarthost.handler.messages) == 3
    # with the smarthost gone, flush says why
    send_mail(relay.port)
    reply = admin.command("flush")
    assert reply.startswith("error: ") and "connect" in reply
    assert admin.command("list") != "<none>"
    samples = scrape(metrics_port)
    assert samples[("emailrelay_messages_forwarded_total", ())] == 3
    assert samples[("emailrelay_forward_duration_seconds_count", ())] == 3
    assert samples[("emailrelay_messages_failed_total", ())] == 0
