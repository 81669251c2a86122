"""The admin interface's command language, without any I/O.

Feed the bytes a client sends to :meth:`AdminSession.receive_data` and write out the
:class:`Output` it returns.  The texts are E-MailRelay 2.6's: the prompt
``E-MailRelay> `` follows every reply (not the greeting: there is none), replies use the
line ending the client uses (CRLF until it has sent a line), and after ``notify`` events
arrive as ``<eol>EVENT: <word>: <word>...`` followed by two spaces.

The core works on a :class:`AdminBackend` -- the instance's spool, SMTP server and DNSBL
-- and on a :class:`ForwardingControl` when forwarding is configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from emailrelay.util.printable import printable

PROMPT = "E-MailRelay> "
CRLF = "\r\n"  # until the client has sent a line
LINE_LIMIT = 4096  # no command is longer; a client sending more is dropped
ERROR_LIMIT = 20  # unrecognised commands before the connection is dropped
UINT_MAX = 4294967295

NO_FORWARD_TO = "error: no remote server configured: use --forward-to"


class ForwardingControl(Protocol):
    """What the admin interface needs from the forwarding agent.

    ``forward`` calls :meth:`request_forward` with reason ``"admin"`` (the run happens
    in the background, as any other request); ``flush`` awaits :meth:`flush`, which
    forwards everything that is waiting and returns ``""`` when all of it went, or the
    reason why not (shown to the admin user as ``error: <reason>``).
    """

    def request_forward(self, reason: str) -> None: ...

    async def flush(self) -> str: ...


class AdminBackend(Protocol):
    """The instance the admin interface controls."""

    @property
    def forwarding(self) -> ForwardingControl | None:
        """None when there is no ``--forward-to``."""

    @property
    def pid(self) -> int: ...

    def ready_ids(self) -> list[str]: ...

    def failed_ids(self) -> list[str]: ...

    def unfail_all(self) -> None: ...

    def status_lines(self) -> list[str]: ...

    def info(self) -> dict[str, str]: ...

    def set_smtp_enabled(self, enabled: bool) -> None: ...

    def suspend_dnsbl(self, seconds: int | None) -> None:
        """None: until resumed; 0: resume now."""

    def terminate(self) -> None: ...


@dataclass
class Output:
    data: bytes = b""
    flush: bool = False  # start a flush and call flush_done() with its result
    close: str | None = None  # close once data is sent; the reason ("" after quit)
    terminate: bool = False  # stop the process (only with --admin-terminate)


class AdminSession:
    def __init__(self, backend: AdminBackend, *, terminate_allowed: bool = False) -> None:
        self.backend = backend
        self.terminate_allowed = terminate_allowed
        self.eol: str | None = None  # as the client sends it
        self.notifying = False
        self.flushing = False
        self.errors = 0
        self._buffer = bytearray()

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> Output:
        out = Output()
        self._buffer += data
        chunks: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if self.eol is None:
                self.eol = "\r\n" if raw.endswith(b"\r") else "\n"
            if len(raw) > LINE_LIMIT:
                chunks.append(self._reply("error: line too long"))
                out.close = "line too long"
                break
            reply = self._command(raw.rstrip(b"\r\0").decode("utf-8", "replace"), out)
            chunks.append(reply)
            if out.close is not None:
                break
        if out.close is None and len(self._buffer) > LINE_LIMIT:
            chunks.append(self._reply("error: line too long"))
            out.close = "line too long"
        out.data = b"".join(chunks)
        return out

    def flush_done(self, error: str) -> bytes:
        self.flushing = False
        return self._reply(f"error: {error}" if error else "OK")

    def event(self, words: Sequence[str]) -> bytes:
        """An event line for a client that asked for ``notify`` (else nothing)."""
        if not self.notifying:
            return b""
        text = printable(": ".join(w for w in words if w))
        text = re.sub(" {2,}", " ", text)
        return f"{self.eol or CRLF}EVENT: {text}  ".encode()

    # -- commands ---------------------------------------------------------------------------

    def _reply(self, text: str) -> bytes:
        eol = self.eol or CRLF
        if text:
            text += "\n"
        return (text.replace("\n", eol) + PROMPT).encode("utf-8", "replace")

    def _lines(self, lines: Iterable[str], empty: str) -> bytes:
        text = "\n".join(lines)
        return self._reply(text or empty)

    def _command(self, line: str, out: Output) -> bytes:
        words = line.split()
        if not words:
            return self._reply("")
        command = words[0].lower()
        arg = words[1] if len(words) > 1 else ""
        b = self.backend
        if command == "flush":
            return self._flush(out)
        if command == "forward":
            forwarding = b.forwarding
            if forwarding is None:
                return self._reply(NO_FORWARD_TO)
            forwarding.request_forward("admin")
            return self._reply("OK")
        if command == "help":
            return self._reply(self._help())
        if command == "status":
            return self._lines(b.status_lines(), "no info")
        if command == "notify":
            self.notifying = True
            return b""
        if command == "list":
            return self._lines(b.ready_ids(), "<none>")
        if command == "failures":
            return self._lines(b.failed_ids(), "<none>")
        if command == "unfail-all":
            b.unfail_all()
            return self._reply("")
        if command == "pid":
            return self._reply(str(b.pid))
        if command == "quit":
            out.close = ""
            return b""
        if command == "terminate" and self.terminate_allowed:
            out.terminate = True  # the adapter logs who asked, then calls terminate()
            return b""
        if command == "info":
            return self._reply(self._info(arg))
        if command == "dnsbl":
            return self._reply(self._dnsbl(words[1:]))
        if command == "smtp":
            if arg.lower() in ("disable", "enable"):
                b.set_smtp_enabled(arg.lower() == "enable")
                return self._reply("OK")
            return self._reply("usage: smtp {disable|enable}")
        self.errors += 1
        if self.errors >= ERROR_LIMIT:
            out.close = "too many errors"
        return self._reply("error: unrecognised command")

    def _flush(self, out: Output) -> bytes:
        if self.flushing:
            return self._reply("error: still working")
        if self.backend.forwarding is None:
            return self._reply(NO_FORWARD_TO)
        if not self.backend.ready_ids():
            return self._reply("error: no messages to send")
        self.flushing = out.flush = True
        return b""  # "OK" or "error: ..." when the flush is done

    def _help(self) -> str:
        names = ["dnsbl", "failures", "flush", "forward", "help", "info", "list", "notify",
                 "pid", "quit", "smtp", "status", "terminate", "unfail-all"]
        if not self.terminate_allowed:
            names.remove("terminate")
        return "commands: " + ", ".join(names)

    def _info(self, key: str) -> str:
        info = self.backend.info()
        for name, value in info.items():
            if key and name.lower() == key.lower():
                return value
        return "usage: info {" + "|".join(sorted(info)) + "}"

    def _dnsbl(self, args: list[str]) -> str:
        action = args[0].lower() if args else ""
        value = args[1] if len(args) > 1 else ""
        if action == "start" and not value:
            seconds: int | None = 0
        elif action == "stop" and not value:
            seconds = None
        elif action == "stop" and value.isdigit() and int(value) <= UINT_MAX:
            seconds = int(value)
        else:
            return "usage: dnsbl {start|stop <timeout>}"
        self.backend.suspend_dnsbl(seconds)
        return "OK"
