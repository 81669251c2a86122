"""A client host with non-local addresses: a network namespace joined by a veth pair.

The relay treats loopback and private addresses as local (no DNSBL look-up, no
``--remote-clients`` needed), so tests that need a "remote" client run it inside a
network namespace of their own.  Both ends use documentation ranges (RFC 5737, RFC
3849): this side has 198.51.100.1 and 2001:db8:e::1, the namespace 198.51.100.2-3 and
2001:db8:e::2-3.  Nothing leaves the machine.  The tests are skipped when the machine
already uses either range (some sandboxes put their own network in a documentation
range), and they need root and iproute2.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys

NET4, NET6 = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:e::/64")
HOST4, HOST6 = "198.51.100.1", "2001:db8:e::1"
CLIENT4 = ("198.51.100.2", "198.51.100.3")
CLIENT6 = ("2001:db8:e::2", "2001:db8:e::3")

_serial = itertools.count(1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=20)


def unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2"
    for network in (NET4, NET6):
        in_use = _networks_in_use()
        if any(network.overlaps(n) for n in in_use if n.version == network.version):
            return f"{network} is already in use on this machine"
    return None


def _networks_in_use() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every route (but the defaults) and every address of this machine."""
    found = []
    for family in ("-4", "-6"):
        routes = json.loads(_ip("-j", family, "route", "show", "table", "all").stdout or "[]")
        for route in routes:
            destination = route.get("dst", "default")
            if destination != "default":
                found.append(ipaddress.ip_network(destination, strict=False))
        for link in json.loads(_ip("-j", family, "addr").stdout or "[]"):
            for info in link.get("addr_info", []):
                found.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                                  strict=False))
    return found


class ClientHost:
    def __init__(self) -> None:
        n = f"{os.getpid() % 100000}x{next(_serial)}"
        self.name, self.host_if, self.client_if = f"ertest{n}", f"erh{n}", f"erc{n}"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.client_if)
            _ip("link", "set", self.client_if, "netns", self.name)
            _ip("addr", "add", f"{HOST4}/24", "dev", self.host_if)
            _ip("-6", "addr", "add", f"{HOST6}/64", "dev", self.host_if, "nodad")
            _ip("link", "set", self.host_if, "up")
            for address in CLIENT4:
                self.exec("ip", "addr", "add", f"{address}/24", "dev", self.client_if)
            for address in CLIENT6:
                self.exec("ip", "-6", "addr", "add", f"{address}/64", "dev", self.client_if,
                          "nodad")
            self.exec("ip", "link", "set", self.client_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def exec(self, *argv: str, timeout: float = 30.0, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, check=check, timeout=timeout)

    def python(self, code: str, timeout: float = 30.0) -> object:
        """Run Python code in the namespace; it prints one JSON value, which is returned."""
        done = self.exec(sys.executable, "-c", code, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"client failed: {done.stderr}")
        return json.loads(done.stdout)

    def close(self) -> None:
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)


SMTP_PROBE = """
import json, smtplib
result = {}
try:
    s = smtplib.SMTP(timeout=10, source_address=(%(source)r, 0))
    code, text = s.connect(%(host)r, %(port)d)
    result["greeting"] = [code, text.decode()]
    if %(send)r:
        s.sendmail("a@example.com", ["b@example.net"], "Subject: hi\\r\\n\\r\\nhello\\r\\n")
        result["sent"] = True
    s.quit()
except smtplib.SMTPServerDisconnected as e:
    result["disconnected"] = str(e)
except smtplib.SMTPConnectError as e:
    result["refused"] = [e.smtp_code, e.smtp_error.decode()]
except OSError as e:
    result["error"] = str(e)
print(json.dumps(result))
"""


def smtp_probe(host: ClientHost, source: str, server: str, port: int,
               send: bool = False) -> dict[str, object]:
    """Connect from ``source`` in the namespace with smtplib; what happened, as a dict."""
    result = host.python(SMTP_PROBE % {"source": source, "host": server, "port": port,
                                       "send": send})
    assert isinstance(result, dict)
    return result
