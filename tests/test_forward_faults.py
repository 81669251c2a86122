"""Forwarding against a scriptable fake server: each fault, the spool afterwards, the log
line, and exactly-once delivery once the server recovers (over TLS for the TLS faults;
tests/test_tls_forward_e2e.py has the other TLS failures, against real TLS servers)."""

from __future__ import annotations

import itertools
import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.support.certs import Pki
from tests.support.fakesmtp import FakeSmtpServer, Script
from tests.support.relay import free_port
from tests.support.spooling import as_client, spool_message, spool_state

CONTENT = b"Subject: test\r\n\r\n.leading dot\r\nbody\r\n"


FAULTS = [
    # name, script changes, extra options, state, log text, reason code
    ("greeting 421", {"greeting": "421 4.3.2 busy"}, [], "ready",
     "smtp client error: service not available: 421 4.3.2 busy", None),
    ("mail 451", {"mail": "451 4.3.0 try later"}, [], "ready",
     "will retry in 60s: 4.3.0 try later", None),
    ("mail 550", {"mail": "550 5.7.1 go away"}, [], "bad", "failed: 5.7.1 go away", "550"),
    ("rcpt 451", {"rcpt": "451 4.2.0 later"}, [], "ready",
     "will retry in 60s: one or more recipients rejected: <b@example.com> 451 4.2.0 later",
     None),
    ("rcpt 550", {"rcpt": "550 5.1.1 unknown"}, [], "bad",
     "failed: one or more recipients rejected: <b@example.com> 550 5.1.1 unknown", "550"),
    ("end of data 451", {"end": "451 4.3.0 disk full"}, [], "ready",
     "will retry in 60s: 4.3.0 disk full", None),
    ("end of data 550", {"end": "550 5.6.0 content refused"}, [], "bad",
     "failed: 5.6.0 content refused", "550"),
    ("dropped in data", {"drop_in_data": True}, [], "ready", "will retry in 60s: ", None),
    ("reset in data", {"drop_in_data": True, "reset_in_data": True}, [], "ready",
     "will retry in 60s: ", None),
    ("greeting 554", {"greeting": "554 5.3.2 no service"}, [], "ready",
     "smtp client error: ", None),
    ("slower than the response timeout", {"delay": {"MAIL": 3.0}},
     ["--response-timeout", "1"], "ready", "will retry in 60s: response timeout after 1s",
     None),
    ("unsolicited reply after EHLO", {"ehlo": ["fake.example", "8BITMIME\r\n500 junk"]}, [],
     "ready", "smtp client error: unexpected response: 500 junk", None),
    ("421 read with the 354", {"data": "354 go\r\n421 4.3.0 bye"}, [], "ready",
     "will retry in 60s: service not available: 421 4.3.0 bye", None),
    ("silent", {"greeting": None}, ["--prompt-timeout", "1", "--response-timeout", "1"],
     "ready", "smtp client error: response timeout after 1s", None),
    # STARTTLS: "tls" names the server's certificate and protocols (see tls_context); the
    # server recovers with a good certificate, and the same options.
    ("tls handshake fails", {"tls": "tlsv1.2 only"}, ["--client-tls", "--tls-config",
                                                      "tlsv1.3"], "ready",
     "smtp client error: tls handshake with {address} failed: tlsv1 alert protocol version",
     None),
    ("tls certificate does not verify", {"tls": "untrusted"},
     ["--client-tls", "--client-tls-verify", "{ca}"], "ready",
     "smtp client error: tls handshake with {address} failed: certificate verify failed: "
     "unable to get local issuer certificate", None),
    ("dropped in the tls handshake", {"tls": "good", "tls_drop": True}, ["--client-tls"],
     "ready", "smtp client error: tls handshake with {address} failed: the connection was "
     "closed during the handshake", None),
    ("no starttls with --client-tls-required", {}, ["--client-tls", "--client-tls-required"],
     "ready", "smtp client error: tls is mandated but the server cannot do starttls", None),
]


def tls_context(pki: Pki, kind: str) -> ssl.SSLContext:
    """A smarthost's STARTTLS context: ``good`` (a certificate from ``pki``),
    ``untrusted`` (from another CA) or ``tlsv1.2 only``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issuer = Pki(pki.directory, "stranger") if kind == "untrusted" else pki
    issuer.issue().configure_cert(context)
    if kind == "tlsv1.2 only":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.mark.parametrize("name,changes,options,state,log_text,code", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_fault_then_recovery(tmp_path: Path, name: str, changes: dict, options: list[str],
                             state: str, log_text: str, code: str | None) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    pki = Pki(tmp_path)
    tls = "--client-tls" in options
    if "tls" in changes:
        changes = {**changes, "tls": tls_context(pki, changes["tls"])}
    options = [option.format(ca=pki.ca_file) for option in options]
    with FakeSmtpServer(Script(**changes)) as server:
        result = as_client(server.address, spool, *options)
        assert log_text.format(address=server.address) in result.stderr, result.stderr
        assert spool_state(spool) == {message_id: state}
        assert not server.messages
        envelope = (spool / f"{message_id}.envelope{'.bad' if state == 'bad' else ''}")
        text = envelope.read_text()
        if state == "bad":
            assert result.returncode == 0  # nothing left that could be sent
            assert "X-MailRelay-Reason: " in text
            assert f"X-MailRelay-ReasonCode: {code}" in text
            assert "failing envelope" in result.stderr
        else:
            assert result.returncode == 1, result.stderr
            attempted = "MAIL" in "".join(server.commands)
            assert ("X-MailRelay-RetryCount: 1" in text) == attempted

        # The server recovers (with STARTTLS and a good certificate for the TLS faults).
        server.script = Script(tls=tls_context(pki, "good") if tls else None)
        again = as_client(server.address, spool, *options)
        if state == "ready":
            assert again.returncode == 0, again.stderr
            assert spool_state(spool) == {}
            assert len(server.wait_for(1)) == 1
            assert server.messages[0].content == CONTENT
            assert server.messages[0].recipients == ["b@example.com"]
            assert server.messages[0].tls == tls
        else:
            assert spool_state(spool) == {message_id: "bad"}
            assert server.messages == []


def test_server_without_pipelining_gets_one_command_at_a_time(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, to=["b@example.com", "c@example.com"])
    with FakeSmtpServer(Script(ehlo=["fake.example", "8BITMIME"])) as server:
        result = as_client(server.address, spool, "--client-smtp-config", "pipelining")
        assert result.returncode == 0, result.stderr
        assert server.pipelined == [False, False]
        assert len(server.messages) == 1


def test_pipelining_when_both_sides_want_it(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, to=["b@example.com", "c@example.com"])
    with FakeSmtpServer() as server:
        result = as_client(server.address, spool, "--client-smtp-config", "pipelining")
        assert result.returncode == 0, result.stderr
        assert server.pipelined == [True, True]
        assert server.messages[0].recipients == ["b@example.com", "c@example.com"]


EIGHT_BIT = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()


def test_eight_bit_message_to_a_seven_bit_server_is_sent_with_a_warning(
        tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, content=EIGHT_BIT, body_type="8bit")
    with FakeSmtpServer(Script(ehlo=["fake.example", "PIPELINING"])) as server:
        result = as_client(server.address, spool)
        assert result.returncode == 0
        assert ("warning: sending an eight-bit message to a server that has not advertised "
                "the 8BITMIME extension") in result.stderr
        assert server.messages[0].content == EIGHT_BIT
        assert "BODY=" not in next(c for c in server.commands if c.startswith("MAIL"))


def test_eight_bit_message_to_a_seven_bit_server_fails_with_eightbitstrict(
        tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=EIGHT_BIT, body_type="8bit")
    with FakeSmtpServer(Script(ehlo=["fake.example", "PIPELINING"])) as server:
        result = as_client(server.address, spool, "--client-smtp-config", "eightbitstrict")
        assert spool_state(spool) == {message_id: "bad"}
        text = (spool / f"{message_id}.envelope.bad").read_text()
        assert "X-MailRelay-Reason: cannot send 8-bit message to 7-bit server" in text
        assert "X-MailRelay-ReasonCode:\r\n" in text.replace("\n", "\r\n").replace(
            "\r\r", "\r")
        assert not [c for c in server.commands if c.startswith("MAIL")]
        assert result.returncode == 0


def test_forward_to_some_keeps_only_the_rejected_recipients(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, to=["good@example.com", "bad@example.com"])
    script = Script(rcpt_by_address={"bad@example.com": "550 5.1.1 no such user"})
    with FakeSmtpServer(script) as server:
        as_client(server.address, spool, "--forward-to-some")
        assert server.messages[0].recipients == ["good@example.com"]
        assert spool_state(spool) == {message_id: "bad"}
        text = (spool / f"{message_id}.envelope.bad").read_text()
        assert "X-MailRelay-To-Remote: bad@example.com" in text
        assert "good@example.com" not in text
        assert "X-MailRelay-ToCount: 1" in text
        assert "one or more recipients rejected: <bad@example.com> 550 5.1.1" in text


def test_forward_to_all_fails_the_whole_message(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, to=["good@example.com", "bad@example.com"])
    script = Script(rcpt_by_address={"bad@example.com": "550 5.1.1 no such user"})
    with FakeSmtpServer(script) as server:
        as_client(server.address, spool)
        assert server.messages == []
        assert "RSET" in server.commands
        text = (spool / f"{message_id}.envelope.bad").read_text()
        assert "good@example.com" in text and "bad@example.com" in text


def test_a_down_smarthost_gets_one_probe_not_one_connection_per_message(
        tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    ids = {spool_message(spool) for _ in range(20)}
    with FakeSmtpServer(Script(greeting="421 4.3.2 down for maintenance")) as server:
        result = as_client(server.address, spool, "--forward-connections", "4")
        assert result.returncode == 1
        assert server.connections == 1
        assert spool_state(spool) == dict.fromkeys(ids, "ready")


def test_messages_past_the_maximum_age_go_to_bad(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, arrival_offset=-10)
    with FakeSmtpServer(Script(mail="451 4.3.0 later")) as server:
        as_client(server.address, spool, "--retry-max-age", "5")
        assert spool_state(spool) == {message_id: "bad"}
        text = (spool / f"{message_id}.envelope.bad").read_text()
        assert "X-MailRelay-Reason: too old to retry: 4.3.0 later" in text


def test_unreachable_messages_past_the_maximum_age_go_to_bad(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    old = spool_message(spool, arrival_offset=-10)
    new = spool_message(spool)
    with FakeSmtpServer(Script(greeting="421 4.3.2 down")) as server:
        as_client(server.address, spool, "--retry-max-age", "5")
    assert spool_state(spool) == {old: "bad", new: "ready"}


def retry_lines(spool: Path, message_id: str) -> tuple[int, float] | None:
    text = (spool / f"{message_id}.envelope").read_text()
    count = re.search(r"X-MailRelay-RetryCount: (\d+)", text)
    after = re.search(r"X-MailRelay-RetryAfter: (\d+)", text)
    return (int(count[1]), float(after[1])) if count and after else None


@pytest.mark.parametrize("address,log_text", [
    ("no-such-host.invalid:25", "smtp client error: cannot connect to no-such-host.invalid:25"),
    ("127.0.0.1:{port}", "connection refused"),
], ids=["name does not resolve", "connection refused"])
def test_unreachable_smarthost_leaves_the_message_ready_without_retry_state(
        tmp_path: Path, address: str, log_text: str) -> None:
    """A failure to connect belongs to the smarthost (in-memory back-off), not to the
    message: the envelope keeps no retry lines, and the message goes once it is back."""
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    result = as_client(address.format(port=free_port()), spool)
    assert result.returncode == 1
    assert log_text in result.stderr.lower(), result.stderr
    assert spool_state(spool) == {message_id: "ready"}
    assert retry_lines(spool, message_id) is None
    with FakeSmtpServer() as server:
        assert as_client(server.address, spool).returncode == 0
        assert [m.content for m in server.messages] == [CONTENT]
    assert spool_state(spool) == {}


def test_a_slow_server_within_the_response_timeout_gets_the_message(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, content=CONTENT)
    with FakeSmtpServer(Script(delay={"greeting": 1.0, "MAIL": 1.0, "END": 1.5})) as server:
        result = as_client(server.address, spool, "--response-timeout", "3")
        assert result.returncode == 0, result.stderr
        assert [m.content for m in server.messages] == [CONTENT]
    assert spool_state(spool) == {}


def test_the_retry_schedule_in_the_envelope_doubles_up_to_the_maximum(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    with FakeSmtpServer(Script(end="451 4.3.0 try later")) as server:
        for attempt, delay in enumerate([10, 20, 35, 35], 1):
            result = as_client(server.address, spool, "--retry-delay", "10",
                               "--retry-max-delay", "35")
            assert f"will retry in {delay}s: 4.3.0 try later" in result.stderr
            count, after = retry_lines(spool, message_id) or (0, 0.0)
            assert count == attempt
            assert abs(after - (time.time() + delay)) < 5
        assert server.messages == []


def test_a_running_relay_retries_on_schedule_then_delivers(tmp_path: Path,
                                                          start_relay) -> None:
    attempts: list[float] = []

    def refuse(_message: object) -> bool:
        attempts.append(time.monotonic())
        return True

    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    with FakeSmtpServer(Script(end="451 4.3.0 try later", on_end=refuse)) as server:
        relay = start_relay("--forward", "--forward-to", server.address, "--retry-delay", "1",
                            "--retry-max-delay", "2", spool=spool)
        deadline = time.monotonic() + 20
        while len(attempts) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(attempts)]
        # 1s, then 2s and 2s (capped); RetryAfter is a whole second rounded up, so a gap
        # of d seconds is at least d and less than d + 1 (plus a little for the run itself).
        assert len(gaps) == 3 and 0.9 <= gaps[0] <= 2.3, gaps
        assert all(1.9 <= gap <= 3.3 for gap in gaps[1:]), gaps
        assert (retry_lines(spool, message_id) or (0,))[0] >= 3
        server.script = Script()  # the smarthost recovers
        assert [m.content for m in server.wait_for(1)] == [CONTENT]
        relay.wait_for_log("forwarding: no more messages to send")
    assert spool_state(spool) == {}


@pytest.mark.parametrize("fault", [
    {"drop_in_data": True},
    {"end": "421 4.3.0 closing down"},
], ids=["dropped in data", "421 to the data"])
def test_a_new_connection_after_an_error_sends_the_rest(tmp_path: Path, fault: dict) -> None:
    """The first connection fails in its first message's data; the client connects again
    for the other messages in the same run, keeps the failed one for retry, and the next
    run sends it: each message arrives once, none twice.  (One connection at a time, so
    that the second connection is the one after the error.)"""
    spool = tmp_path / "spool"
    contents = {spool_message(spool, content=b"Subject: %d\r\n\r\nbody\r\n" % n):
                b"Subject: %d\r\n\r\nbody\r\n" % n for n in range(3)}
    with FakeSmtpServer(Script(**fault, faulty_connections={1})) as server:
        result = as_client(server.address, spool, "--forward-connections", "1")
        assert result.returncode == 1, result.stderr  # one message is left
        assert server.connections == 2, result.stderr
        assert [m.connection for m in server.messages] == [2, 2]
        (kept,) = spool_state(spool)
        assert f"forwarding [{kept}]: will retry in 60s: " in result.stderr
        assert spool_state(spool) == {kept: "ready"}
        assert (retry_lines(spool, kept) or (0,))[0] == 1
        assert sorted(m.content for m in server.messages) == sorted(
            c for i, c in contents.items() if i != kept)

        again = as_client(server.address, spool, "--forward-connections", "1")
        assert again.returncode == 0, again.stderr
        assert server.connections == 3
        assert [m.connection for m in server.messages] == [2, 2, 3]
        assert server.messages[-1].content == contents[kept]
        assert sorted(m.content for m in server.messages) == sorted(contents.values())
    assert spool_state(spool) == {}


class BlackHole:
    """A listening socket whose accept queue is full and never emptied: the kernel drops
    further SYNs, so a connect to it hangs (SYN retransmits) rather than being refused."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.3)
            self.fillers.append(probe)
            try:
                probe.connect(("127.0.0.1", self.port))
            except TimeoutError:
                return  # the queue is full: a connect hangs now
        raise RuntimeError("the accept queue never filled up")

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


def test_connection_timeout_when_the_connect_itself_hangs(tmp_path: Path) -> None:
    """--connection-timeout bounds the TCP connect: the run gives up after about a
    second, says so, and keeps the message (no retry lines: the smarthost was never
    reached, so the failure is not the message's)."""
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    hole = BlackHole()
    try:
        started = time.monotonic()
        result = as_client(f"127.0.0.1:{hole.port}", spool, "--connection-timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert result.returncode == 1, result.stderr
    assert (f"smtp client error: cannot connect to 127.0.0.1:{hole.port}: connection "
            "timeout after 1s") in result.stderr, result.stderr
    assert elapsed < 10, elapsed  # not the 40s default nor the kernel's SYN retries
    assert spool_state(spool) == {message_id: "ready"}
    assert retry_lines(spool, message_id) is None
