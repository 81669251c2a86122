"""Protocol abuse against the real relay: SMTP smuggling end to end, over-long lines,
command and pipelining floods, slowloris, connection floods and non-local clients.

Cases for features still being built elsewhere (STARTTLS injection, AUTH brute force,
connection limits) belong here too once they land; see the README's reliability section.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakesmtp import FakeSmtpServer
from tests.support.netns_pair import CLIENT_ADDRESS, SERVER_ADDRESS, NetworkPair
from tests.support.relay import Relay

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


def vm_hwm_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1])


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


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
    before = vm_hwm_kb(relay.process.pid)
    out = session(relay.port, b"EHLO c\r\nNOOP " + b"x" * (30 << 20) + b"\r\nNOOP\r\nQUIT\r\n")
    assert replies(out)[-3:] == [500, 250, 221]
    assert b"500 line too long" in out
    assert vm_hwm_kb(relay.process.pid) - before < 16 << 10


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
    before = vm_hwm_kb(relay.process.pid)
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
    assert vm_hwm_kb(relay.process.pid) - before < 32 << 10
    assert smtplib.SMTP("127.0.0.1", relay.port, timeout=10).noop()[0] == 250


def test_500_pipelined_transactions_in_one_write(start_relay) -> None:
    relay = start_relay()
    one = (b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
           b"Subject: p\r\n\r\nbody\r\n.\r\n")
    out = session(relay.port, b"EHLO c\r\n" + one * 500 + b"QUIT\r\n", timeout=120)
    assert out.count(b"250 message processed") == 500
    assert len(relay.envelopes()) == 500


def test_slowloris_connections_are_dropped_and_others_served(start_relay) -> None:
    # All from one address: raise the per-address limit (tests/test_limits.py tests it).
    relay = start_relay("--idle-timeout", "2", "--max-client-connections", "200")
    loris = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", relay.port))
        s.sendall(b"EHLO half-a-comm")  # never finished
        loris.append(s)
    try:
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


def test_a_connection_flood_leaves_the_relay_responsive_and_leaks_nothing(
        start_relay) -> None:
    relay = start_relay("--max-connections", "1000", "--max-client-connections", "1000")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        # The first message opens the spool directory descriptor kept for syncfs.
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: before\r\n\r\nx")
    time.sleep(0.5)
    baseline = open_files(relay.process.pid)
    flood = [socket.create_connection(("127.0.0.1", relay.port)) for _ in range(500)]
    try:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: flood\r\n\r\nx")
    finally:
        for s in flood:
            s.close()
    deadline = time.monotonic() + 10
    while open_files(relay.process.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_files(relay.process.pid) <= baseline
    assert len(relay.envelopes()) == 2  # the one before and the one during the flood


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
