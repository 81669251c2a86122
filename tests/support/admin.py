"""A plain socket client for the relay's admin interface."""

from __future__ import annotations

import socket
import time

PROMPT = b"E-MailRelay> "


class AdminClient:
    def __init__(self, port: int, host: str = "127.0.0.1", eol: bytes = b"\r\n") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.eol = eol
        self.pending = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + self.eol)

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.pending:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed while waiting for {marker!r}: {self.pending!r}")
            self.pending += data
        end = self.pending.index(marker) + len(marker)
        out, self.pending = self.pending[:end], self.pending[end:]
        return out

    def command(self, line: str) -> str:
        """Send a command; the reply text without the prompt and with "\\n" line ends."""
        self.send(line)
        reply = self.read_until(PROMPT)[:-len(PROMPT)]
        return reply.decode().replace("\r\n", "\n").removesuffix("\n")

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the relay has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
