"""The real ``emailrelay`` storage daemon with real clients: smtplib and swaks."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.relay import Relay, peak_rss_kb

needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


def message(subject: str = "test", body: str = "hello\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def swaks(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{relay.port}", "--from",
                           "alice@example.com", "--to", "bob@example.net",
                           "--helo", "client.example", *args],
                          capture_output=True, text=True, timeout=30)


def raw_session(relay: Relay, data: bytes, read_until: bytes = b"221") -> bytes:
    """Send raw bytes and return everything the server said until it closes."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while read_until not in received:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def test_smtplib_message_is_stored_as_e_mailrelay_stores_it(start_relay) -> None:
    relay = start_relay("--domain", "relay.example")
    with smtplib.SMTP("127.0.0.1", relay.port) as client:
        code, banner = client.ehlo("client.example")
        assert code == 250 and b"PIPELINING" in banner
        refused = client.send_message(message(), "alice@example.com",
                                      ["bob@example.net", "carol@example.org"])
        assert refused == {}
    (envelope_path,) = relay.envelopes()
    (content_path,) = relay.contents()
    assert envelope_path.name.replace(".envelope", ".content") == content_path.name
    env = parse(envelope_path.read_bytes())
    assert env.from_ == "alice@example.com"
    assert env.to_remote == ["bob@example.net", "carol@example.org"]
    assert env.client == "127.0.0.1"
    content = content_path.read_bytes()
    first = content.split(b"\r\n", 1)[0].decode()
    assert first.startswith("Received: from client.example ([127.0.0.1]) by relay.example "
                            "with ESMTP ; ")
    assert b"Subject: test\r\n" in content and content.endswith(b"hello\r\n")
    assert content.count(b"\n") == content.count(b"\r\n")
    log = relay.log()
    assert "smtp connection from 127.0.0.1:" in log
    assert 'rx<<: "mail FROM:<alice@example.com>' in log  # as smtplib writes it
    assert 'rx<<: [message content not logged]' in log
    assert 'tx>>: "250 message processed"' in log


def test_help_with_smtplib(start_relay) -> None:
    """HELP gets a 214 reply that lists the commands, and the session goes on."""
    relay = start_relay()
    with smtplib.SMTP("127.0.0.1", relay.port) as client:
        text = client.help()  # smtplib returns the text only
        assert text.startswith(b"commands: EHLO HELO MAIL RCPT DATA")
        assert text.endswith(b"\nend of help")
        code, _ = client.docmd("HELP", "DATA")
        assert code == 214
        assert client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n"
                               ) == {}
    assert len(relay.envelopes()) == 1
    relay.wait_for_log('tx>>: "214 end of help"')


def test_anonymous_content_has_no_received_line(start_relay) -> None:
    relay = start_relay("--anonymous=content")
    with smtplib.SMTP("127.0.0.1", relay.port) as client:
        client.send_message(message(), "a@example.com", ["b@example.com"])
    assert not relay.contents()[0].read_bytes().startswith(b"Received:")


@needs_swaks
def test_swaks_pipelining(start_relay) -> None:
    relay = start_relay()
    result = swaks(relay, "--pipeline")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 message processed" in result.stdout
    assert len(relay.envelopes()) == 1


@needs_swaks
def test_swaks_bdat_when_chunking_is_on(start_relay) -> None:
    relay = start_relay("--server-smtp-config=+chunking")
    result = swaks(relay, "--body", "chunked body")
    assert result.returncode == 0, result.stdout
    out = raw_session(relay, b"EHLO c\r\nMAIL FROM:<a@x> BODY=BINARYMIME\r\nRCPT TO:<b@x>\r\n"
                      b"BDAT 6\r\nbin\r\n.BDAT 5 LAST\r\nary\x00\xffQUIT\r\n")
    assert b"250 6 bytes received" in out and b"250 message processed" in out
    envelopes = [parse(p.read_bytes()) for p in relay.envelopes()]
    assert sorted(e.body_type for e in envelopes) == ["7bit", "binarymime"]
    binary = [p for p in relay.contents() if p.read_bytes().endswith(b"ary\x00\xff")]
    assert len(binary) == 1 and b"bin\r\n.ary\x00\xff" in binary[0].read_bytes()


def test_bdat_is_refused_unless_configured(start_relay) -> None:
    relay = start_relay()
    out = raw_session(relay, b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\n"
                      b"abc\r\nQUIT\r\n")
    # BDAT is an unknown command, so its chunk is read as another (unknown) command.
    assert out.count(b"500 command unrecognized") == 2 and out.endswith(b"221 OK\r\n")
    assert b"CHUNKING" not in out


@needs_swaks
def test_smtputf8_addresses(start_relay) -> None:
    relay = start_relay("--server-smtp-config=+smtputf8")
    out = raw_session(relay, "EHLO c\r\nMAIL FROM:<jörg@exämple.de> SMTPUTF8\r\n"
                      "RCPT TO:<åsa@example.se>\r\nDATA\r\nSubject: å\r\n\r\nhej\r\n.\r\n"
                      "QUIT\r\n".encode())
    assert b"250-SMTPUTF8" in out and b"250 message processed" in out
    env = parse(relay.envelopes()[0].read_bytes())
    assert env.utf8_mailbox_names is True
    assert env.from_ == "jörg@xn--exmple-cua.de"
    assert env.to_remote == ["åsa@example.se"]
    assert env.body_type == "8bit"


@needs_swaks
def test_size_limit(start_relay) -> None:
    relay = start_relay("--size", "2000")
    result = swaks(relay, "--body", "x" * 5000)
    assert "552 message size exceeds fixed maximum message size" in result.stdout
    assert relay.envelopes() == [] and relay.contents() == []
    ok = swaks(relay, "--body", "small")
    assert ok.returncode == 0 and len(relay.envelopes()) == 1
    with smtplib.SMTP("127.0.0.1", relay.port) as client:
        client.ehlo()
        assert client.does_esmtp and client.esmtp_features["size"] == "2000"


@pytest.mark.parametrize("data,expected", [
    (b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: x\r\n\r\nhi\n.\n"
     b"MAIL FROM:<smuggled@x>\r\nRCPT TO:<victim@x>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n",
     [b"250 message processed", b"221 OK"]),
    (b"EHLO c\r\nNOOP " + b"x" * 9000 + b"\r\nQUIT\r\n", [b"500 line too long", b"221 OK"]),
    (b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: " + b"y" * 2000
     + b"\r\n\r\nbody\r\n.\r\nQUIT\r\n", [b"554 message header line too long", b"221 OK"]),
    (b"EHLO c\r\nMAIL FROM:<a\x00@x>\r\nQUIT\r\n", [b"553 mailbox name not allowed"]),
    (b"EHLO c\r\nRCPT TO:<b@x>\r\nDATA\r\nQUIT\r\n",
     [b"503 command out of sequence", b"503 command out of sequence", b"221 OK"]),
    (b"EHLO c\r\n" + b"GARBAGE\r\n" * 30, [b"421 too many errors"]),
])
def test_hostile_input(start_relay, data: bytes, expected: list[bytes]) -> None:
    relay = start_relay()
    out = raw_session(relay, data, read_until=expected[-1])
    position = 0
    for reply in expected:
        position = out.find(reply, position)
        assert position >= 0, (reply, out)
        position += 1
    time.sleep(0.2)
    # A smuggled second message never appears: one message at most, holding the rest.
    envelopes = relay.envelopes()
    assert len(envelopes) <= 1
    for path in relay.contents():
        content = path.read_bytes()
        assert content.count(b"\n") == content.count(b"\r\n")


def test_too_many_recipients_end_to_end(start_relay) -> None:
    """Recipient 1001 gets "452 too many recipients"; the first thousand are kept and the
    message goes through with them.  The log shows the refused recipient and the reason
    side by side."""
    relay = start_relay()
    out = raw_session(relay, b"EHLO c\r\nMAIL FROM:<a@x>\r\n"
                      + b"".join(b"RCPT TO:<r%d@x>\r\n" % i for i in range(1000))
                      + b"RCPT TO:<one-too-many@x>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"
                      b"QUIT\r\n", read_until=b"221 OK\r\n")
    assert out.count(b"\r\n250 recipient <r") == 1000
    assert b"\r\n452 too many recipients\r\n354 " in out
    assert out.endswith(b"250 message processed\r\n221 OK\r\n")
    (envelope,) = relay.envelopes()
    to = parse(envelope.read_bytes()).to_remote
    assert len(to) == 1000 and to[-1] == "r999@x" and "one-too-many@x" not in to
    relay.wait_for_log('rx<<: "RCPT TO:<one-too-many@x>"\n'
                       'emailrelay: info: smtp command refused with "452 too many recipients": '
                       '127.0.0.1\n'
                       'emailrelay: info: tx>>: "452 too many recipients"\n')


@pytest.mark.parametrize("data,replies,log_lines", [
    # A bare LF does not end a command: what follows it is part of the NOOP's line, so
    # the MAIL behind it is never run and the RCPT after it is out of sequence.
    (b"NOOP\nMAIL FROM:<evil@x>\r\nRCPT TO:<b@x>\r\n",
     [b"250 noop", b"503 command out of sequence"],
     ['rx<<: "NOOP\\nMAIL FROM:<evil@x>"', 'tx>>: "250 noop"']),
    # Nor does a bare CR: the RCPT behind it is read as part of the sender's address.
    (b"MAIL FROM:<a@x>\rRCPT TO:<evil@x>\r\n",
     [b"553 mailbox name not allowed: invalid character in mailbox name"],
     ['rx<<: "MAIL FROM:<a@x>\\rRCPT TO:<evil@x>"',
      'tx>>: "553 mailbox name not allowed: invalid character in mailbox name"']),
    (b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\nDATA\r\n",
     [b"250 sender <a@x> OK", b"550 invalid character in mailbox name"],
     ['rx<<: "RCPT TO:<b@x>\\nDATA"', 'tx>>: "550 invalid character in mailbox name"']),
], ids=["bare lf after noop", "bare cr in mail from", "bare lf in rcpt to"])
def test_bare_cr_or_lf_in_a_command(start_relay, data: bytes, replies: list[bytes],
                                    log_lines: list[str]) -> None:
    """Only CRLF ends a command line; a bare CR or LF inside one cannot smuggle in a
    second command.  The log shows the line with the stray character spelt out."""
    relay = start_relay()
    out = raw_session(relay, b"EHLO c\r\n" + data + b"QUIT\r\n", read_until=b"221 OK\r\n")
    tail = out.split(b"250 8BITMIME\r\n", 1)[1]
    position = 0
    for reply in [*replies, b"221 OK"]:
        position = tail.find(reply, position)
        assert position >= 0, (reply, tail)
        position += 1
    assert tail.count(b"\r\n") == len(replies) + 1  # one reply per CRLF-ended line
    log = relay.wait_for_log('tx>>: "221 OK"')
    for line in log_lines:
        assert f"emailrelay: info: {line}\n" in log
    for refused in (r.decode() for r in replies if r[:1] in b"45"):
        assert f'info: smtp command refused with "{refused}' in log  # (the reply's start)
    assert relay.envelopes() == []


def test_client_vanishing_mid_data_leaves_nothing(start_relay) -> None:
    relay = start_relay()
    with socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: x\r\n\r\n"
                  + b"partial body\r\n" * 1000)
        time.sleep(0.3)
    relay.wait_for_log("smtp connection closed")
    time.sleep(0.2)
    assert list(relay.spool.iterdir()) == []


def test_slow_client_times_out(start_relay) -> None:
    relay = start_relay("--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.settimeout(5)
        assert s.recv(1000).startswith(b"220 ")
        s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: x")
        time.sleep(2.5)
        rest = b""
        while chunk := s.recv(1000):
            rest += chunk
    assert relay.wait_for_log("no activity after 1s")
    assert list(relay.spool.iterdir()) == []


def test_remote_clients_are_refused_by_default(tmp_path: Path) -> None:
    """A non-local address: listen on a non-loopback address of this host if there is one."""
    import psutil
    addresses = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                 if a.family == socket.AF_INET and not a.address.startswith(("127.", "10.",
                                                                            "192.168.", "172."))]
    if not addresses:
        pytest.skip("this host has no public IPv4 address to connect from")
    address = addresses[0]
    relay = Relay(tmp_path, "--interface", address, wait=False)
    try:
        relay.wait_for_log(f"smtp server on {address}:")
        with socket.create_connection((address, relay.port), timeout=5) as s:
            assert s.recv(100) == b""
        relay.wait_for_log("configured to reject non-local smtp connection")
    finally:
        relay.stop()


def test_many_concurrent_clients(start_relay) -> None:
    import concurrent.futures
    relay = start_relay()

    def send(i: int) -> dict:
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            return client.send_message(message(f"n{i}"), "a@example.com", ["b@example.com"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(send, range(64))) == [{}] * 64
    assert len(relay.envelopes()) == 64 and len(relay.contents()) == 64


def test_a_200_mb_message_streams_to_disk(start_relay) -> None:
    relay = start_relay()
    before = peak_rss_kb(relay.process.pid)
    line = b"x" * 998 + b"\r\n"
    block = line * 1000
    with socket.create_connection(("127.0.0.1", relay.port), timeout=60) as s:
        s.recv(1000)
        s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        reply = b""
        while b"354" not in reply:
            reply += s.recv(1000)
        s.sendall(b"Subject: big\r\n\r\n")
        for _ in range(200):
            s.sendall(block)
        s.sendall(b".\r\nQUIT\r\n")
        reply = b""
        while b"221" not in reply:
            reply += s.recv(1000)
    assert b"250 message processed" in reply
    growth_kb = peak_rss_kb(relay.process.pid) - before
    assert growth_kb < 8 * 1024, f"peak RSS grew by {growth_kb} KB"
    (content,) = relay.contents()
    assert content.stat().st_size > 200_000_000
