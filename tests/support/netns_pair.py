"""Two network namespaces joined by a veth pair: a server host (192.0.2.1) and a client
host (192.0.2.2, TEST-NET-1, so not a local address to the relay) that reach each other
and nothing else.  (This machine drops traffic between its own root namespace and a
namespace, so both ends live in namespaces.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER_ADDRESS = "192.0.2.1"
CLIENT_ADDRESS = "192.0.2.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class NetworkPair:
    def __init__(self) -> None:
        tag = f"er{os.getpid() % 100000}"
        self.server, self.client = f"{tag}srv", f"{tag}cli"

    def __enter__(self) -> NetworkPair:
        _ip("netns", "add", self.server)
        try:
            _ip("netns", "add", self.client)
            _ip("link", "add", "veth-s", "netns", self.server, "type", "veth", "peer", "name",
                "veth-c", "netns", self.client)
            for ns, link, address in ((self.server, "veth-s", SERVER_ADDRESS),
                                      (self.client, "veth-c", CLIENT_ADDRESS)):
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", link)
                _ip("-n", ns, "link", "set", link, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def in_server(self) -> list[str]:
        """A command prefix that runs a program on the server host."""
        return ["ip", "netns", "exec", self.server]

    def client_python(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run Python code on the client host (this interpreter, this checkout)."""
        return subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[2])
