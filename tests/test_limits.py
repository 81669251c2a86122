"""Concurrent connection limits: the registry, and the real relay answering 421."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from emailrelay.app.observer import Observer
from emailrelay.metrics.registry import RelayMetrics
from emailrelay.policy.connections import Connection, ConnectionLimits, ConnectionRegistry

LOCAL = ("127.0.0.1", "25")


def test_total_and_per_client_limits() -> None:
    observer = Observer(RelayMetrics())
    registry = ConnectionRegistry(ConnectionLimits(total=3, per_client=2), observer)
    a1 = registry.admit("smtp", LOCAL, ("192.0.2.1", "1000"))
    a2 = registry.admit("smtp", LOCAL, ("192.0.2.1", "1001"))
    refused = registry.admit("smtp", LOCAL, ("192.0.2.1", "1002"))
    assert isinstance(a1, Connection) and isinstance(a2, Connection)
    assert not isinstance(refused, Connection)
    assert (refused.reply, refused.reason) == ("421 too many connections from your address",
                                               "client_connection_limit")
    b1 = registry.admit("smtp", LOCAL, ("192.0.2.2", "1000"))
    assert isinstance(b1, Connection)
    full = registry.admit("smtp", LOCAL, ("192.0.2.3", "1000"))
    assert not isinstance(full, Connection) and full.reply == "421 too many connections"
    # admin connections are not limited
    assert isinstance(registry.admit("admin", LOCAL, ("127.0.0.1", "2000")), Connection)
    registry.close(a1)
    registry.close(a1)  # twice is harmless
    assert isinstance(registry.admit("smtp", LOCAL, ("192.0.2.1", "1003")), Connection)
    assert observer.metrics is not None
    rejected = observer.metrics.rejected
    assert rejected.labels("connection_limit")._value.get() == 1
    assert rejected.labels("client_connection_limit")._value.get() == 1


def test_zero_means_no_limit() -> None:
    registry = ConnectionRegistry(ConnectionLimits(total=0, per_client=0))
    for port in range(500):
        assert isinstance(registry.admit("smtp", LOCAL, ("192.0.2.1", str(port))), Connection)


def test_status_report() -> None:
    registry = ConnectionRegistry()
    registry.add_listener("smtp", "0.0.0.0:25")
    registry.add_listener("admin", "::1.10026")
    smtp = registry.admit("smtp", ("192.0.2.10", "25"), ("192.0.2.1", "4000"))
    registry.admit("admin", ("::1", "10026"), ("::1", "5000"))
    out = registry.outgoing(("192.0.2.10", "6000"), "192.0.2.99:25")
    assert isinstance(smtp, Connection)
    registry.close(smtp)
    assert registry.report() == [
        "LISTEN: 0.0.0.0:25", "LISTEN: ::1.10026",
        "OUT started: 1", "OUT finished: 0", "OUT: 192.0.2.10:6000 -> 192.0.2.99:25",
        "IN started: 2", "IN finished: 1", "IN: ::1.10026 <- ::1.5000"]
    registry.close(out)
    assert "OUT finished: 1" in registry.report()


# -- the real relay -------------------------------------------------------------------------

def greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1000)
        if not chunk:
            break
        data += chunk
    return sock, data


def test_total_limit_holds(start_relay) -> None:
    relay = start_relay("--max-connections", "2")
    relay.wait_for_log("smtp connection closed")  # the helper's readiness probe
    first, hello1 = greeting(relay.port)
    second, hello2 = greeting(relay.port)
    assert hello1.startswith(b"220 ") and hello2.startswith(b"220 ")
    third, refused = greeting(relay.port)
    assert refused == b"421 too many connections\r\n"
    assert third.recv(10) == b""  # and closed
    relay.wait_for_log("too many connections: refusing the smtp connection from 127.0.0.1 "
                       "(--max-connections 2)")
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", relay.port, timeout=10)
    first.close()
    for _ in range(50):  # the slot comes back once the relay has seen the close
        sock, hello = greeting(relay.port)
        sock.close()
        if hello.startswith(b"220 "):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the limit did not let a new connection in after one closed")
    second.close()


def test_per_client_limit_holds(start_relay) -> None:
    relay = start_relay("--max-client-connections", "1")
    relay.wait_for_log("smtp connection closed")  # the helper's readiness probe
    first, hello = greeting(relay.port)
    assert hello.startswith(b"220 ")
    second, refused = greeting(relay.port)
    assert refused == b"421 too many connections from your address\r\n"
    relay.wait_for_log("too many connections from 127.0.0.1: refusing another smtp "
                       "connection (--max-client-connections 1)")
    first.close()
    second.close()


def test_pop_connections_are_limited_too(start_relay, tmp_path) -> None:
    from tests.test_pop_e2e import start_pop

    pop = start_pop(start_relay, tmp_path, "--max-client-connections", "2")
    pop.relay.wait_for_log("pop connection closed")  # the helpers' readiness probes
    pop.relay.wait_for_log("smtp connection closed")
    sockets = []
    for _ in range(2):
        sock, hello = greeting(pop.port)
        sockets.append(sock)
        assert hello.startswith(b"+OK ")
    sock, refused = greeting(pop.port)
    sockets.append(sock)
    # the limit counts SMTP and POP connections from the address together
    assert refused == b"-ERR too many connections from your address\r\n"
    for sock in sockets:
        sock.close()
