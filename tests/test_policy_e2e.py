"""--dnsbl and --remote-clients end to end: clients with non-local addresses.

The clients run in a network namespace of their own (see tests/support/netns.py) and
the block list is served by Debian's dnsmasq.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.admin import AdminClient
from tests.support.helpers import Dnsmasq
from tests.support.netns import CLIENT4, CLIENT6, HOST4, HOST6, ClientHost, smtp_probe
from tests.support.relay import free_port
from tests.test_metrics import scrape

pytestmark = pytest.mark.skipif(netns.unavailable() is not None,
                                reason=f"network namespaces: {netns.unavailable()}")

LISTED4, UNLISTED4 = CLIENT4
LISTED6, UNLISTED6 = CLIENT6
V6_NAME = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.0.0.0.8.b.d.0.1.0.0.2"


@pytest.fixture(scope="module")
def client_host() -> Iterator[ClientHost]:
    host = ClientHost()
    yield host
    host.close()


@pytest.fixture(scope="module")
def dnsbl_server(tmp_path_factory) -> Iterator[Dnsmasq]:
    tmp: Path = tmp_path_factory.mktemp("dnsbl")
    server = Dnsmasq(tmp, ["--local=/bl.test/", "--host-record=2.100.51.198.bl.test,127.0.0.2",
                           f"--host-record={V6_NAME}.bl.test,127.0.0.2"])
    yield server
    server.stop()


def start(start_relay, *args: str):
    """A relay listening on this side of the veth pair (and admin on loopback)."""
    port, admin = free_port(), free_port()
    relay = start_relay("--interface", f"smtp={HOST4},smtp={HOST6},admin=127.0.0.1",
                        "--admin", str(admin), *args, port=port, wait=False)
    relay.wait_for_log(f"smtp server on {HOST6}.{port}")  # E-MailRelay's form
    relay.admin_port = admin
    return relay


def test_listed_clients_are_dropped_and_others_served(start_relay, client_host,
                                                      dnsbl_server) -> None:
    metrics_port = free_port()
    relay = start(start_relay, "--remote-clients", "--dnsbl",
                  f"bl.test,1,3000,127.0.0.1:{dnsbl_server.port}",
                  "--metrics-port", str(metrics_port))
    for source, server in ((LISTED4, HOST4), (LISTED6, HOST6)):
        result = smtp_probe(client_host, source, server, relay.port)
        assert "disconnected" in result, result  # no greeting at all
        relay.wait_for_log(f"dnsbl: client address [{source}] blocked by [bl.test]")
    for source, server in ((UNLISTED4, HOST4), (UNLISTED6, HOST6)):
        result = smtp_probe(client_host, source, server, relay.port, send=True)
        assert result.get("sent") is True, result
        assert result["greeting"][0] == 220
    clients = sorted(e.read_text().split("X-MailRelay-Client: ")[1].split()[0]
                     for e in relay.envelopes())
    assert clients == sorted([UNLISTED4, UNLISTED6])
    samples = scrape(metrics_port)
    assert samples[("emailrelay_rejected_total", (("reason", "dnsbl"),))] == 2
    assert samples[("emailrelay_messages_received_total", ())] == 2


def test_admin_can_suspend_the_dnsbl(start_relay, client_host, dnsbl_server) -> None:
    relay = start(start_relay, "--remote-clients", "--dnsbl",
                  f"bl.test,1,3000,127.0.0.1:{dnsbl_server.port}")
    admin = AdminClient(relay.admin_port)
    assert "disconnected" in smtp_probe(client_host, LISTED4, HOST4, relay.port)
    assert admin.command("dnsbl stop") == "OK"
    assert smtp_probe(client_host, LISTED4, HOST4, relay.port)["greeting"][0] == 220
    assert admin.command("dnsbl start") == "OK"
    assert "disconnected" in smtp_probe(client_host, LISTED4, HOST4, relay.port)


def test_log_only_threshold(start_relay, client_host, dnsbl_server) -> None:
    relay = start(start_relay, "--remote-clients", "--dnsbl",
                  f"bl.test,0,3000,127.0.0.1:{dnsbl_server.port}")
    assert smtp_probe(client_host, LISTED4, HOST4, relay.port)["greeting"][0] == 220
    relay.wait_for_log(f"dnsbl: client address [{LISTED4}] listed by [bl.test]: allowed")


def test_remote_clients_need_remote_clients(start_relay, client_host) -> None:
    port, admin = free_port(), free_port()
    relay = start_relay("--interface", HOST4, "--admin", str(admin), port=port, wait=False)
    relay.wait_for_log(f"admin server on {HOST4}:{admin}")
    assert "disconnected" in smtp_probe(client_host, LISTED4, HOST4, port)
    relay.wait_for_log(f"configured to reject non-local smtp connection: {LISTED4} is not "
                       "a local address")
    code = ("import json, socket\n"
            f"s = socket.create_connection(({HOST4!r}, {admin}), timeout=10)\n"
            "print(json.dumps(s.recv(100).decode()))\n")
    assert client_host.python(code) == ""  # closed without a prompt
    relay.wait_for_log(f"configured to reject non-local admin connection: {LISTED4} is not "
                       "a local address")


ADMIN_SESSION = """
import json, socket
s = socket.create_connection((%(host)r, %(port)d), timeout=10, source_address=(%(source)r, 0))
replies = []
for command in ("pid", "help"):
    s.sendall(command.encode() + b"\\r\\n")
    data = b""
    while not data.endswith(b"E-MailRelay> "):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    replies.append(data.decode())
s.close()
print(json.dumps(replies))
"""


def test_remote_clients_lets_a_remote_admin_client_in(start_relay, client_host) -> None:
    """The counterpart of the refusal above: with --remote-clients a client from a
    non-local address gets replies and the prompt on the admin port."""
    port, admin = free_port(), free_port()
    relay = start_relay("--remote-clients", "--interface", f"smtp=127.0.0.1,admin={HOST4}",
                        "--admin", str(admin), port=port)
    relay.wait_for_log(f"admin server on {HOST4}:{admin}")
    replies = client_host.python(ADMIN_SESSION % {"host": HOST4, "port": admin,
                                                  "source": LISTED4})
    assert replies == [f"{relay.process.pid}\r\nE-MailRelay> ",
                       "commands: dnsbl, failures, flush, forward, help, info, list, notify, "
                       "pid, quit, smtp, status, unfail-all\r\nE-MailRelay> "]
    log = relay.wait_for_log(f"admin connection closed: disconnected: {LISTED4}:")
    assert f"admin connection from {LISTED4}:" in log
    assert "reject non-local" not in log
