"""Client filters and routing filters in a real forwarding relay."""

from __future__ import annotations

import shutil
import smtplib
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.capture import CaptureServer
from tests.support.helpers import Dnsmasq, script
from tests.support.relay import free_port
from tests.support.spooling import as_client, spool_message, spool_state

needs_dnsmasq = pytest.mark.skipif(shutil.which("dnsmasq") is None and
                                   not Path("/usr/sbin/dnsmasq").exists(),
                                   reason="dnsmasq is not installed")


def send(port: int, recipients: list[str], subject: str = "x") -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@example.com", recipients,
                        f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_client_filter_edits_rejects_and_passes(start_relay, tmp_path: Path) -> None:
    # Tag every message; reject the ones whose subject says "reject".
    flt = script(tmp_path, "client-filter.sh", r"""
if grep -q '^Subject: reject' "$1"; then echo '<<550 not today>>'; exit 1; fi
printf 'X-Client-Filter: seen\r\n' | cat - "$1" > "$1.tmp" && mv "$1.tmp" "$1"
exit 0
""")
    with CaptureServer() as far:
        relay = start_relay("--forward-to", far.address, "--client-filter", str(flt))
        send(relay.port, ["bob@example.net"], "pass")
        send(relay.port, ["bob@example.net"], "reject")
        relay.stop()
        relay2 = start_relay("--forward", "--forward-to", far.address, "--client-filter",
                             str(flt), spool=relay.spool)
        (arrived,) = far.wait_for(1)
        relay2.wait_for_log("forwarding: no more messages to send")
    assert arrived.content.startswith(b"X-Client-Filter: seen\r\n")
    assert b"Subject: pass" in arrived.content
    (bad,) = relay2.envelopes(".envelope.bad")
    env = parse(bad.read_bytes())
    assert env.extra_value("Reason") == "not today"
    assert env.extra_value("ReasonCode") == "550"


def _port_free_on_both() -> int:
    import socket
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.2", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@needs_dnsmasq
def test_split_and_mx_route_each_domain_to_its_own_server(start_relay, tmp_path: Path) -> None:
    port = _port_free_on_both()
    dns = Dnsmasq(tmp_path, ["--mx-host=one.test,mx.one.test,10",
                             "--host-record=mx.one.test,127.0.0.1",
                             "--mx-host=two.test,mx.two.test,10",
                             "--host-record=mx.two.test,127.0.0.2"])
    try:
        with CaptureServer("127.0.0.1", port) as one, CaptureServer("127.0.0.2", port) as two:
            relay = start_relay("--filter", f"split:{port}", "--client-filter",
                                f"mx:127.0.0.1:{dns.port}", "--forward-to", "127.0.0.1:9",
                                "--forward-on-disconnect")
            send(relay.port, ["a@one.test", "b@two.test", "c@ONE.test"])
            (to_one,) = one.wait_for(1)
            (to_two,) = two.wait_for(1)
            relay.wait_for_log("forwarding: no more messages to send")
    finally:
        dns.stop()
    assert sorted(to_one.recipients) == ["a@one.test", "c@ONE.test"]
    assert to_two.recipients == ["b@two.test"]
    assert to_one.content == to_two.content
    assert relay.envelopes() == [] and relay.envelopes(".envelope.bad") == []


def test_a_client_filter_exit_102_stops_every_route_of_the_run(tmp_path: Path) -> None:
    """Exit 102 ends the whole forwarding run after that message, not only its own
    smarthost's queue: messages routed elsewhere (ForwardToAddress) stay queued too."""
    spool = tmp_path / "spool"
    flt = script(tmp_path, "stop.sh", r"""
if grep -q '^Subject: stop' "$1"; then exit 102; fi
sleep 0.2
exit 0
""")
    with CaptureServer() as default, CaptureServer() as routed:
        spool_message(spool, content=b"Subject: stop\r\n\r\nx\r\n")
        for i in range(10):
            spool_message(spool, to=[f"r{i}@example.com"], forward_to_address=routed.address)
        result = as_client(default.address, spool, "--client-filter", str(flt))
        assert result.returncode == 0, result.stderr
        assert len(default.messages) == 1  # the message itself is still sent
        sent_elsewhere = len(routed.messages)
    assert "a client filter stopped the run" in result.stderr
    assert sent_elsewhere < 10
    assert sorted(spool_state(spool).values()) == ["ready"] * (10 - sent_elsewhere)
