"""Forwarding end to end with real far-side servers: Postfix's smtp-sink and aiosmtpd."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.capture import CaptureServer
from tests.support.fakesmtp import FakeSmtpServer, Script
from tests.support.relay import emailrelay_command, free_port, wait_until
from tests.support.socks4a import Socks4aProxy
from tests.support.spooling import as_client, spool_message, spool_state

TRICKY = (b"Subject: tricky\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
          b"bare\nnewline and bare\rreturn\r\n" + "caf\u00e9\r\n".encode())



def test_as_client_drains_the_spool_into_smtp_sink(tmp_path: Path, smtp_sink) -> None:
    address, dumps = smtp_sink
    spool = tmp_path / "spool"
    for i in range(20):
        spool_message(spool, to=[f"r{i}@example.com"],
                      content=f"Subject: {i}\r\n\r\nmessage {i}\r\n".encode())
    result = as_client(address, spool)
    assert result.returncode == 0, result.stderr
    assert spool_state(spool) == {}
    assert not list(spool.glob("emailrelay.*"))
    wait_until(lambda: len(list(dumps.iterdir())) == 20)
    dumped = b"".join(p.read_bytes() for p in dumps.iterdir())
    for i in range(20):
        assert f"message {i}".encode() in dumped
    assert result.stderr.count("smtp connection to") <= 2  # many messages per connection
    assert "forwarding: no more messages to send" in result.stderr


def test_as_client_with_an_empty_spool(tmp_path: Path) -> None:
    result = as_client("127.0.0.1:9", tmp_path / "spool")
    assert result.returncode == 0
    assert "emailrelay: no messages to send" in result.stderr


def test_as_client_with_the_smarthost_down(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    result = as_client(f"127.0.0.1:{free_port()}", spool)
    assert result.returncode == 1
    assert "smtp client error: cannot connect to 127.0.0.1:" in result.stderr
    assert "connection refused" in result.stderr.lower()
    assert spool_state(spool) == {message_id: "ready"}


def test_content_arrives_byte_for_byte(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, content=TRICKY, body_type="8bit",
                  to=["x@example.com", "y@example.com"])
    with CaptureServer() as server:
        result = as_client(server.address, spool)
        assert result.returncode == 0, result.stderr
        (message,) = server.wait_for(1)
    expected = TRICKY.replace(b"bare\nnewline and bare\rreturn", b"bare\r\nnewline and "
                              b"bare\r\nreturn")
    assert message.content == expected
    assert message.mail_from == "a@example.com"
    assert message.recipients == ["x@example.com", "y@example.com"]


def test_local_recipients_are_never_forwarded(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    mixed = spool_message(spool, to=["remote@example.com"], to_local=["postmaster"])
    local_only = spool_message(spool, to=[], to_local=["postmaster"])
    with CaptureServer() as server:
        result = as_client(server.address, spool)
        (message,) = server.wait_for(1)
    assert message.recipients == ["remote@example.com"]
    assert spool_state(spool) == {local_only: "bad"}
    assert mixed not in spool_state(spool)
    assert "failing message with no remote recipients" in result.stderr
    text = (spool / f"{local_only}.envelope.bad").read_bytes()
    # E-MailRelay's lines: no code for a failure without an SMTP reply.
    assert text.endswith(b"X-MailRelay-Reason: no remote recipients\r\n"
                         b"X-MailRelay-ReasonCode:\r\n")


def test_forward_to_address_overrides_forward_to(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with CaptureServer() as default, CaptureServer() as routed:
        spool_message(spool, to=["d@example.com"])
        spool_message(spool, to=["r@example.com"], forward_to_address=routed.address)
        result = as_client(default.address, spool)
        assert result.returncode == 0, result.stderr
        assert [m.recipients for m in default.wait_for(1)] == [["d@example.com"]]
        assert [m.recipients for m in routed.wait_for(1)] == [["r@example.com"]]
        assert f"forward-to-address=[{routed.address}]" in result.stderr


def test_parallel_connections_deliver_each_message_once(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for i in range(60):
        spool_message(spool, to=[f"r{i}@example.com"])
    with FakeSmtpServer(Script(delay={"END": 0.01})) as server:
        result = as_client(server.address, spool, "--forward-connections", "3")
        assert result.returncode == 0, result.stderr
        received = sorted(m.recipients[0] for m in server.messages)
    assert received == sorted(f"r{i}@example.com" for i in range(60))
    assert 1 < server.connections <= 3
    assert spool_state(spool) == {}


def test_unix_domain_smarthost(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with FakeSmtpServer(unix_path=str(tmp_path / "smtp.s")) as server:
        result = as_client(server.address, spool)
        assert result.returncode == 0, result.stderr
        assert len(server.messages) == 1


def test_ipv6_smarthost(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer(host="::1") as server:
        result = as_client(f"[::1]:{server.port}", spool)
        assert result.returncode == 0, result.stderr
        server.wait_for(1)
        assert f"smtp connection to ::1.{server.port}" in result.stderr


def test_socks4a_proxy_resolves_the_smarthost_name(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer() as server, Socks4aProxy({"smarthost.test": "127.0.0.1"}) as proxy:
        result = as_client(f"smarthost.test:{server.port}@127.0.0.1:{proxy.port}", spool)
        assert result.returncode == 0, result.stderr
        server.wait_for(1)
    assert proxy.requests == [("smarthost.test", server.port)]


def test_as_proxy_end_to_end(tmp_path: Path, start_relay) -> None:
    log_file = tmp_path / "proxy.log"
    body = "Subject: proxied\r\n\r\nline one\r\n.dot line\r\n"
    with CaptureServer() as server:
        relay = start_relay("--as-proxy", server.address, "--log-file", str(log_file))
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.sendmail("from@example.com", ["to@example.com"], body)
        (message,) = server.wait_for(1)
        wait_until(lambda: spool_state(relay.spool) == {})
    received, _, rest = message.content.partition(b"\r\n")
    assert received.startswith(b"Received: from ") and b"with ESMTP" in received
    assert rest == body.encode()
    assert message.recipients == ["to@example.com"]
    log = log_file.read_text()
    assert f"forwarding to {server.address}" in log
    assert "forwarding: [client disconnect]" in log


def test_immediate_forwards_before_the_reply(tmp_path: Path, start_relay) -> None:
    with CaptureServer() as server:
        relay = start_relay("--immediate", "--forward-to", server.address)
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.sendmail("from@example.com", ["to@example.com"], "Subject: now\r\n\r\nx\r\n")
            assert len(server.messages) == 1  # already there when 250 came back
        assert spool_state(relay.spool) == {}
        assert "using --immediate can result in client timeout errors" in relay.log()


def test_immediate_passes_a_permanent_rejection_back(tmp_path: Path, start_relay) -> None:
    with FakeSmtpServer(Script(mail="550 5.7.1 not from you")) as server:
        relay = start_relay("--immediate", "--forward-to", server.address)
        with smtplib.SMTP("127.0.0.1", relay.port) as client, \
                pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("from@example.com", ["to@example.com"], "Subject: x\r\n\r\nx\r\n")
        assert error.value.smtp_code == 554
        assert b"forwarding failed: 5.7.1 not from you" in error.value.smtp_error
        assert list(spool_state(relay.spool).values()) == ["bad"]


def test_automatic_retry_after_a_temporary_failure(tmp_path: Path, start_relay) -> None:
    with FakeSmtpServer(Script(mail="451 4.3.0 busy")) as server:
        relay = start_relay("--forward-on-disconnect", "--forward-to", server.address,
                            "--retry-delay", "1")
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.sendmail("from@example.com", ["to@example.com"], "Subject: x\r\n\r\nx\r\n")
        relay.wait_for_log("will retry in 1s: 4.3.0 busy")
        server.script = Script()
        relay.wait_for_log("forwarding: [retry]")
        assert len(server.wait_for(1)) == 1
        wait_until(lambda: spool_state(relay.spool) == {})
        time.sleep(1.5)
        assert len(server.messages) == 1


def test_retry_state_survives_a_restart(tmp_path: Path, start_relay) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with FakeSmtpServer(Script(mail="451 4.3.0 busy")) as server:
        as_client(server.address, spool)
        assert server.connections == 1
        text = (spool / f"{message_id}.envelope").read_text()
        assert "X-MailRelay-RetryCount: 1" in text and "X-MailRelay-RetryAfter: " in text
        server.script = Script()
        # A new process polling every second still waits for the stored retry time.
        relay = start_relay("--poll", "1", "--forward-to", server.address, spool=spool)
        time.sleep(2.5)
        assert server.connections == 1
        assert relay.process.poll() is None
        # An explicit start-up forward does not wait.
        assert as_client(server.address, spool).returncode == 0
        assert len(server.messages) == 1


def test_bad_envelope_from_a_failure_stays_readable(tmp_path: Path) -> None:
    """The .bad envelope (with retry lines and reason) still parses, and unfails cleanly."""
    from emailrelay.spool.store import Spool

    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with FakeSmtpServer(Script(end="451 later")) as server:
        as_client(server.address, spool)
        server.script = Script(end="554 5.6.0 never")
        as_client(server.address, spool)
    envelope = Spool(spool).read_envelope(message_id, ".bad")
    assert envelope.extra_value("Reason") == "5.6.0 never"
    assert envelope.extra_value("ReasonCode") == "554"
    assert envelope.retry_count == 1


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_forward_on_startup_while_serving(tmp_path: Path, start_relay) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer() as server:
        relay = start_relay("--forward", "--forward-to", server.address, spool=spool)
        server.wait_for(1)
        relay.wait_for_log("forwarding: [startup]")
        subprocess.run(["swaks", "--server", f"127.0.0.1:{relay.port}", "--to",
                        "x@example.com", "--from", "y@example.com"], capture_output=True,
                       check=True, timeout=30)
        time.sleep(0.5)
        assert len(server.messages) == 1  # no --forward-on-disconnect: it waits
        assert len(spool_state(spool)) == 1


def test_client_interface_and_a_host_name(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer() as server:
        result = as_client(f"localhost:{server.port}", spool, "--client-interface",
                           "127.0.0.1")
        assert result.returncode == 0, result.stderr
        server.wait_for(1)
        assert f"smtp connection to 127.0.0.1:{server.port}" in result.stderr


def test_client_interface_family_restricts_the_addresses(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with CaptureServer() as server:  # IPv4 only
        result = as_client(f"127.0.0.1:{server.port}", spool, "--client-interface", "::1")
        assert result.returncode == 1
        assert "smtp client error: cannot connect to" in result.stderr
        assert spool_state(spool) == {message_id: "ready"}


def test_two_forwarders_on_one_spool_never_send_a_message_twice(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for i in range(80):
        spool_message(spool, to=[f"r{i}@example.com"])
    with FakeSmtpServer(Script(delay={"END": 0.005})) as server:
        command = [*emailrelay_command(), "--as-client", server.address, "--spool-dir",
                   str(spool), "--user", "root"]
        first = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        second = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        assert (first.wait(60), second.wait(60)) == (0, 0)
        received = sorted(m.recipients[0] for m in server.messages)
    assert received == sorted(f"r{i}@example.com" for i in range(80))
    assert spool_state(spool) == {}
