"""Protocol abuse against the real relay: SMTP smuggling end to end, over-long lines,
command and pipelining floods, slowloris and connection floods against the connection
limits, logins injected behind STARTTLS and STLS, AUTH brute force, non-local clients.

Clients that must count as other hosts bind another loopback address (127.0.0.2...) as
their source.
"""

from __future__ import annotations

import base64
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import Pki
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.helpers import fail2ban_matches
from tests.support.netns_pair import CLIENT_ADDRESS, SERVER_ADDRESS, NetworkPair
from tests.support.relay import Relay, free_port, peak_rss_kb
from tests.test_tls_server_e2e import RawSmtp

pytestmark = pytest.mark.slow

# End-of-data look-alikes published in 2023 (SEC Consult's SMTP smuggling research and the
# follow-ups for Postfix, Sendmail and Exim): each ends DATA for some lax server.
SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r",
             b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]
LAX_ENDS = [b"\r\n.\r\n", *SMUGGLING[:7]]


def replies(data: bytes) -> list[int]:
    """The codes of the final lines of the replies in a server's output."""
    return [int(m[1]) for m in re.finditer(rb"(?m)^(\d{3}) ", data)]


def session(port: int, data: bytes, until: bytes = b"221 ", host: str = "127.0.0.1",
            timeout: float = 20) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while until not in received:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            received += chunk
    return received


def lax_end(wire: bytes) -> int:
    """Where a lax server would end the data: the earliest look-alike of the end marker."""
    text = b"\r\n" + wire
    found = [i for i in (text.find(marker) for marker in LAX_ENDS) if i >= 0]
    return min(found) - 2 if found else -1


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection to the relay from ``source`` (another loopback address is another
    client host to the relay)."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def first_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "emailrelay.auth"
    path.write_text("server plain alice secret\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.mark.parametrize("smuggle", SMUGGLING, ids=[repr(s)[2:-1] for s in SMUGGLING])
def test_smuggling_does_not_end_data_here_nor_downstream(start_relay, smuggle: bytes) -> None:
    with FakeSmtpServer() as far:
        relay = start_relay("--forward-to", far.address, "--forward-on-disconnect")
        out = session(relay.port, b"EHLO c\r\nMAIL FROM:<a@example.com>\r\n"
                      b"RCPT TO:<b@example.com>\r\nDATA\r\nSubject: s\r\n\r\nhello" + smuggle
                      + b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
                      b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n")
        codes = replies(out)
        after_354 = codes[codes.index(354) + 1:]
        if b"\x00" in smuggle:
            assert after_354 == [554, 221], out  # NUL in the data: refused whole
            assert relay.envelopes() == []
            return
        assert after_354 == [250, 221], out  # one message, ended only by the real marker
        (message,) = far.wait_for(1)
        time.sleep(0.3)
        assert len(far.messages) == 1
        assert message.recipients == ["b@example.com"]
        assert b"MAIL FROM:<evil@example.com>" in message.content
        # What we forwarded has no look-alike before its real end marker.
        assert lax_end(message.wire) == len(message.wire) - 5, message.wire


def test_a_30_mb_line_is_refused_in_bounded_memory(start_relay) -> None:
    relay = start_relay()
    before = peak_rss_kb(relay.process.pid)
    out = session(relay.port, b"EHLO c\r\nNOOP " + b"x" * (30 << 20) + b"\r\nNOOP\r\nQUIT\r\n")
    assert replies(out)[-3:] == [500, 250, 221]
    assert b"500 line too long" in out
    assert peak_rss_kb(relay.process.pid) - before < 16 << 10


def test_a_flood_of_100000_pipelined_commands_is_answered_in_order(start_relay) -> None:
    relay = start_relay()
    out = session(relay.port, b"EHLO c\r\n" + b"NOOP\r\n" * 100_000 + b"QUIT\r\n",
                  timeout=60)
    assert replies(out) == [220, 250] + [250] * 100_000 + [221]
    assert relay.process.poll() is None


def test_a_client_that_never_reads_cannot_grow_the_relay(start_relay) -> None:
    """Commands sent without reading a reply: the relay's output backs up and it stops
    reading, so TCP pushes back on the client instead of the relay buffering for ever."""
    relay = start_relay()
    before = peak_rss_kb(relay.process.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", relay.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(3)
        chunk = b"HELP\r\n" * 10_000
        try:
            while sent < 200 << 20:
                s.sendall(chunk)
                sent += len(chunk)
        except TimeoutError:
            pass
    assert sent < 200 << 20, "the relay read everything without pushing back"
    assert peak_rss_kb(relay.process.pid) - before < 32 << 10
    assert smtplib.SMTP("127.0.0.1", relay.port, timeout=10).noop()[0] == 250


def test_500_pipelined_transactions_in_one_write(start_relay) -> None:
    relay = start_relay()
    one = (b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
           b"Subject: p\r\n\r\nbody\r\n.\r\n")
    out = session(relay.port, b"EHLO c\r\n" + one * 500 + b"QUIT\r\n", timeout=120)
    assert out.count(b"250 message processed") == 500
    assert len(relay.envelopes()) == 500


def test_slowloris_connections_are_dropped_and_others_served(start_relay) -> None:
    """100 half-commands from five hosts, 20 each, up to --max-client-connections: held
    until the idle timeout; a 21st from one of them is refused at once, another host is
    served meanwhile, and the slots come back once the idle ones are closed."""
    relay = start_relay("--idle-timeout", "2", "--max-client-connections", "20")
    hosts = [f"127.0.0.{n}" for n in range(2, 7)]
    loris = []
    try:
        for host in hosts:
            for _ in range(20):
                s = connect(relay.port, host)
                s.sendall(b"EHLO half-a-comm")  # never finished
                loris.append(s)
        with connect(relay.port, hosts[0]) as one_too_many:
            assert first_line(one_too_many) == b"421 too many connections from your address\r\n"
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: meanwhile\r\n\r\nx")
        assert time.monotonic() - started < 2
        time.sleep(3.5)
        for s in loris:
            s.settimeout(2)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data.startswith(b"220 ")  # greeting, then closed for idleness
    finally:
        for s in loris:
            s.close()
    assert relay.log().count("no activity after 2s") >= 100
    with connect(relay.port, hosts[0]) as again:
        assert first_line(again).startswith(b"220 ")


def test_a_connection_flood_leaves_the_relay_responsive_and_leaks_nothing(
        start_relay) -> None:
    """500 connections from one host against the default limits (200 at once, 50 from one
    address): 50 are served, 450 get 421 at once, another host is served meanwhile; then
    300 from ten hosts fill the total and the rest get 421; nothing leaks."""
    relay = start_relay()
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        # The first message opens the spool directory descriptor kept for syncfs.
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: before\r\n\r\nx")
    time.sleep(0.5)
    baseline = open_files(relay.process.pid)
    flood = [connect(relay.port, "127.0.0.2") for _ in range(500)]
    try:
        greetings = [first_line(s)[:4] for s in flood]
        assert greetings.count(b"220 ") == 50 and greetings.count(b"421 ") == 450, greetings
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: flood\r\n\r\nx")
        wide = [connect(relay.port, f"127.0.1.{n % 10}") for n in range(300)]
        flood += wide
        greetings = [first_line(s) for s in wide]
        served = sum(g.startswith(b"220 ") for g in greetings)
        assert served == 200 - 50, served  # the total, less the first host's 50
        assert greetings.count(b"421 too many connections\r\n") == 300 - served
        # Held: the 200 served; the refused ones are closed as soon as they have their 421.
        deadline = time.monotonic() + 10
        while open_files(relay.process.pid) > baseline + 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_files(relay.process.pid) <= baseline + 200
    finally:
        for s in flood:
            s.close()
    deadline = time.monotonic() + 10
    while open_files(relay.process.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_files(relay.process.pid) <= baseline
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:  # served again
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: after\r\n\r\nx")
    assert len(relay.envelopes()) == 3  # before, during and after the flood
    log = relay.log()
    assert log.count("too many connections from 127.0.0.2: refusing") == 450
    assert "(--max-connections 200)" in log


# -- STARTTLS injection and AUTH brute force ------------------------------------------------


def test_a_login_injected_behind_starttls_never_counts(start_relay, tmp_path: Path,
                                                       pki: Pki) -> None:
    """AUTH (with the right password) pipelined behind STARTTLS in plaintext: dropped
    with the plaintext, so the session under TLS is not logged in (tests/
    test_tls_server_e2e.py has the same for MAIL and RCPT)."""
    relay = start_relay("--server-tls", "--server-tls-certificate", str(pki.pem()),
                        "--server-auth", str(secrets_file(tmp_path)))
    plain = base64.b64encode(b"\0alice\0secret")
    smtp = RawSmtp(relay.port)
    smtp.send(b"EHLO x\r\nSTARTTLS\r\nAUTH PLAIN " + plain + b"\r\n")
    smtp.reply()
    assert smtp.reply() == [b"220 ready to start tls"]
    smtp.start_tls(pki.client_context())
    smtp.send(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\n")
    assert any(line.startswith(b"250-AUTH ") for line in smtp.reply())
    assert smtp.reply() == [b"530 authentication required"]
    smtp.send(b"AUTH PLAIN " + plain + b"\r\nMAIL FROM:<a@example.com>\r\n")
    assert smtp.reply()[0].startswith(b"235 ")
    assert smtp.reply()[0].startswith(b"250 ")
    smtp.close()
    log = relay.wait_for_log("smtp connection closed")
    assert log.count("successful authentication") == 1
    assert log.index("successful authentication") > log.index("tls protocol established")


def test_a_pop_login_injected_behind_stls_never_counts(start_relay, tmp_path: Path,
                                                       pki: Pki) -> None:
    pop_port = free_port()
    start_relay("--server-tls", "--server-tls-certificate", str(pki.pem()), "--pop",
                "--pop-port", str(pop_port), "--pop-auth", str(secrets_file(tmp_path)))
    pop = RawSmtp(pop_port)  # its reply() reads one-line POP3 replies as well
    assert pop.greeting[0].startswith(b"+OK ")
    pop.send(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert pop.reply()[0].startswith(b"+OK")
    pop.start_tls(pki.client_context())
    pop.send(b"STAT\r\n")
    assert pop.reply() == [b"-ERR log in first"]
    pop.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
    assert [pop.reply()[0][:3] for _ in range(4)] == [b"+OK"] * 4
    pop.close()




class Guesser(threading.Thread):
    """One attacker connection after another from ``source``, each guessing passwords
    with AUTH PLAIN until the relay closes it, until ``deadline``."""

    def __init__(self, port: int, source: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.port, self.source, self.deadline = port, source, deadline
        self.refused = 0  # connections refused by --max-client-connections
        self.answers: list[float] = []  # seconds from each guess to its 535
        self.guesses_per_connection: list[int] = []

    def run(self) -> None:
        n = 0
        while time.monotonic() < self.deadline:
            try:
                with connect(self.port, self.source) as s:
                    if first_line(s).startswith(b"421 "):
                        self.refused += 1
                        time.sleep(0.05)
                        continue
                    s.sendall(b"EHLO guesser\r\n")
                    s.recv(4096)
                    guesses = 0
                    while True:
                        n += 1
                        guess = base64.b64encode(f"\0alice\0guess{n}".encode())
                        sent = time.monotonic()
                        s.sendall(b"AUTH PLAIN " + guess + b"\r\n")
                        reply = first_line(s)
                        if not reply.startswith(b"535"):
                            break
                        guesses += 1
                        self.answers.append(time.monotonic() - sent)
                    self.guesses_per_connection.append(guesses)
            except OSError:
                pass


def test_auth_brute_force_is_slowed_capped_and_logged_for_fail2ban(start_relay,
                                                                   tmp_path: Path) -> None:
    """Twelve attacker threads on one host guess for six seconds against
    --max-client-connections 4: every failure is answered two seconds late, a connection
    gets three guesses, the host gets four connections; a user on another host logs in at
    once, and fail2ban's own tool finds every guess, and only the attacker's address."""
    relay = start_relay("--server-auth", str(secrets_file(tmp_path)), "--log-address",
                        "--log-time", "--max-client-connections", "4")
    started = time.monotonic()
    attackers = [Guesser(relay.port, "127.0.0.2", started + 6) for _ in range(12)]
    for attacker in attackers:
        attacker.start()
    time.sleep(1)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as user:
        before = time.monotonic()
        assert user.login("alice", "secret")[0] == 235
        assert time.monotonic() - before < 1.5
        user.sendmail("a@example.com", ["b@example.com"], b"Subject: meanwhile\r\n\r\nx")
    for attacker in attackers:
        attacker.join(20)
    elapsed = time.monotonic() - started
    answers = [a for attacker in attackers for a in attacker.answers]
    per_connection = [g for attacker in attackers for g in attacker.guesses_per_connection]
    refused = sum(attacker.refused for attacker in attackers)
    print(f"brute force: {len(answers)} guesses in {elapsed:.1f}s from one host, "
          f"{refused} connections refused")
    assert answers and min(answers) >= 1.8  # each failure answered two seconds late
    assert max(per_connection) <= 3  # the third failure closes the connection
    assert refused > 0
    assert len(answers) <= 4 * (elapsed / 1.8 + 1)  # four connections, one guess per 2s
    guesses = relay.log().count("failed authentication of remote client")
    assert guesses >= len(answers)  # (a guess cut off by the deadline is logged, unseen)
    assert fail2ban_matches(relay.log_path, tmp_path) == ["127.0.0.2"] * guesses


@pytest.fixture
def hosts() -> Iterator[NetworkPair]:
    if not shutil.which("ip"):
        pytest.skip("needs iproute2")
    try:
        pair = NetworkPair().__enter__()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot make network namespaces: {e}")
    try:
        yield pair
    finally:
        pair.__exit__()


CLIENT = f"""
import smtplib
try:
    with smtplib.SMTP("{SERVER_ADDRESS}", {{port}}, timeout=10) as c:
        print(c.sendmail("a@example.com", ["anyone@elsewhere.example"], "Subject: r\\r\\n\\r\\nx"))
except (smtplib.SMTPException, OSError) as e:
    print("refused", type(e).__name__)
"""


@pytest.mark.parametrize("flags,served", [([], False), (["--remote-clients"], True)],
                         ids=["default", "remote-clients"])
def test_a_non_local_client_needs_remote_clients(tmp_path: Path, hosts: NetworkPair,
                                                 flags: list[str], served: bool) -> None:
    """The relay on one host, a client with a public-looking address on another: refused
    by default (not an open relay), served with --remote-clients."""
    relay = Relay(tmp_path, "--interface", SERVER_ADDRESS, *flags, wait=False,
                  prefix=hosts.in_server())
    try:
        relay.wait_for_log(f"smtp server on {SERVER_ADDRESS}")
        result = hosts.client_python(CLIENT.format(port=relay.port))
        if served:
            assert result.stdout.strip() == "{}", result
            assert len(relay.envelopes()) == 1
            assert f"smtp connection from {CLIENT_ADDRESS}" in relay.log()
        else:
            assert result.stdout.startswith("refused"), result
            relay.wait_for_log("configured to reject non-local smtp connection")
            assert relay.envelopes() == []
    finally:
        relay.stop()
