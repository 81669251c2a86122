"""A capturing SMTP server (aiosmtpd) that records exactly what arrived."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from tests.support.relay import free_port


@dataclass
class Captured:
    mail_from: str
    recipients: list[str]
    content: bytes  # as received, dot-stuffing removed, CRLF line endings


@dataclass
class CaptureHandler:
    messages: list[Captured] = field(default_factory=list)
    reply: str = "250 OK"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.messages.append(Captured(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or b"")))
        return self.reply


class CaptureServer:
    """``with CaptureServer() as server:`` listens on 127.0.0.1:<server.port>."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.handler = CaptureHandler()
        self.host = host
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname=host, port=self.port,
                                     data_size_limit=0, enable_SMTPUTF8=True)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def messages(self) -> list[Captured]:
        with self.handler.lock:
            return list(self.handler.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")

    def __enter__(self) -> CaptureServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
