"""A scriptable SMTP server for fault injection (a thread per connection).

The :class:`Script` says what to answer to each step, how long to wait before
answering and where to drop the connection; change it between runs to make the
server "recover".  Messages count as delivered only when the script answers 2xx to
the end of the data.  With a TLS context it offers STARTTLS (and can drop the
connection where the handshake should start); with ``auth`` it offers AUTH PLAIN and
LOGIN and takes any password.
"""

from __future__ import annotations

import base64
import os
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.relay import free_port


@dataclass
class Script:
    greeting: str | None = "220 fake.example ESMTP"  # None: say nothing at all
    ehlo: list[str] = field(default_factory=lambda: ["fake.example", "PIPELINING",
                                                     "8BITMIME"])
    mail: str = "250 2.1.0 ok"
    rcpt: str = "250 2.1.5 ok"
    rcpt_by_address: dict[str, str] = field(default_factory=dict)  # overrides rcpt
    data: str = "354 go ahead"
    end: str = "250 2.0.0 queued"
    drop_in_data: bool = False  # close the connection half-way through the content
    reset_in_data: bool = False  # with drop_in_data: send a TCP reset, not a clean close
    # drop_in_data and a non-2xx ``end`` apply only on these connections (1 is the first;
    # None: on all); the others get the content through and "250" to it.  A 421 to the
    # end of the data is followed by closing the connection, as a real server does.
    faulty_connections: set[int] | None = None
    # Called with each complete message before the reply to its data: False drops the
    # connection without a reply (a far side whose 250 is never sent).
    on_end: Callable[[Received], bool] | None = None
    delay: dict[str, float] = field(default_factory=dict)  # step -> seconds before reply
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this server context
    tls_drop: bool = False  # say 220 to STARTTLS, then close instead of the handshake
    auth: bool = False  # offer AUTH PLAIN LOGIN, accept any password


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    content: bytes  # dot-stuffing removed
    connection: int = 0  # which connection (1, 2, ...) it arrived on
    confirmed: bool = False  # the client sent another command after our 2xx to its data
    wire: bytes = b""  # the data as it came, dot-stuffed, ending with CRLF "." CRLF
    tls: bool = False  # it came over TLS
    user: str = ""  # the AUTH user name of its session ("" without AUTH)


class FakeSmtpServer:
    def __init__(self, script: Script | None = None, *, unix_path: str | None = None) -> None:
        self.script = script or Script()
        self.messages: list[Received] = []
        self.connections = 0
        self.commands: list[str] = []
        self.pipelined: list[bool] = []  # per RCPT: did it arrive before MAIL's reply?
        self.lock = threading.Lock()
        self.unix_path = unix_path
        self.port = 0 if unix_path else free_port()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        if unix_path:
            self.server: socketserver.BaseServer = socketserver.ThreadingUnixStreamServer(
                unix_path, Handler)
        else:
            socketserver.ThreadingTCPServer.allow_reuse_address = True
            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return self.unix_path or f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeSmtpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")

    # -- one connection ---------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            connection = self.connections
        script = self.script
        conn = _Lines(sock)
        accepted: list[Received] = []  # here, not yet confirmed by a later command
        user = ""
        try:
            self._reply(conn, "greeting", script.greeting)
            if script.greeting is None:
                time.sleep(30)
                return
            mail_from, rcpts = "", []
            while True:
                line = conn.readline()
                if line is None:
                    return
                verb = line.split(" ", 1)[0].upper()
                with self.lock:
                    self.commands.append(line)
                    for message in accepted:
                        message.confirmed = True
                    accepted.clear()
                if verb in ("EHLO", "HELO"):
                    lines = script.ehlo if verb == "EHLO" else ["fake.example"]
                    if verb == "EHLO":
                        secure = isinstance(conn.sock, ssl.SSLSocket)
                        lines = [*lines, *(["STARTTLS"] if script.tls and not secure else []),
                                 *(["AUTH PLAIN LOGIN"] if script.auth else [])]
                    self._reply(conn, verb, "\r\n".join(
                        f"250{'-' if i < len(lines) - 1 else ' '}{t}"
                        for i, t in enumerate(lines)))
                elif verb == "MAIL":
                    mail_from, rcpts = line.split(":", 1)[1].split(">")[0].strip("<"), []
                    self._reply(conn, "MAIL", script.mail)
                elif verb == "RCPT":
                    with self.lock:
                        self.pipelined.append(conn.had_early_input)
                    rcpt = line.split(":", 1)[1].split(">")[0].strip("<")
                    reply = script.rcpt_by_address.get(rcpt, script.rcpt)
                    if reply.startswith("2"):
                        rcpts.append(rcpt)
                    self._reply(conn, "RCPT", reply)
                elif verb == "DATA":
                    self._reply(conn, "DATA", script.data)
                    if not script.data.startswith("354"):
                        continue
                    faulty = (script.faulty_connections is None
                              or connection in script.faulty_connections)
                    drop = script.drop_in_data and faulty
                    end = script.end if faulty else "250 2.0.0 queued"
                    if drop and script.reset_in_data:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    content = conn.read_data(drop_half_way=drop)
                    if content is None:
                        return
                    received = Received(mail_from, rcpts, content, connection, wire=conn.wire,
                                        tls=isinstance(sock, ssl.SSLSocket), user=user)
                    if script.on_end is not None and not script.on_end(received):
                        return
                    self._reply(conn, "END", end)
                    if end.startswith("2"):
                        with self.lock:
                            self.messages.append(received)
                            accepted.append(received)
                    elif end.startswith("421"):
                        return
                elif verb == "STARTTLS" and script.tls is not None:
                    self._reply(conn, "STARTTLS", "220 2.0.0 go ahead")
                    if script.tls_drop:
                        return
                    conn.buffer = b""  # plaintext sent behind STARTTLS is never a command
                    sock = conn.sock = script.tls.wrap_socket(sock, server_side=True)
                elif verb == "AUTH" and script.auth:
                    user = self._auth(conn, line)
                    if user is None:
                        return
                elif verb == "QUIT":
                    self._reply(conn, "QUIT", "221 bye")
                    return
                else:
                    self._reply(conn, verb, "250 ok")
        except OSError:  # ssl.SSLError included: a failed handshake
            return
        finally:
            sock.close()

    def _auth(self, conn: _Lines, line: str) -> str | None:
        """AUTH PLAIN (with or without an initial response) or LOGIN: the user name."""
        words = line.split()
        mechanism = words[1].upper() if len(words) > 1 else ""
        prompts = ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"] if mechanism == "LOGIN" else [""]
        answers = words[2:3]
        for prompt in prompts[len(answers):]:
            conn.send(f"334 {prompt}\r\n")
            answer = conn.readline()
            if answer is None:
                return None
            answers.append(answer)
        decoded = [base64.b64decode(a) if a != "=" else b"" for a in answers]
        user = [*decoded[0].split(b"\0"), b""][1] if mechanism == "PLAIN" else decoded[0]
        conn.send("235 2.7.0 authenticated\r\n")
        return user.decode(errors="replace")

    def _reply(self, conn: _Lines, step: str, text: str | None) -> None:
        if text is None:
            return
        delay = self.script.delay.get(step, 0.0)
        if step == "MAIL":
            time.sleep(0.1)  # let pipelined RCPTs arrive, so that they can be seen early
            conn.peek()
        if delay:
            time.sleep(delay)
        conn.send(text + "\r\n")


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.had_early_input = False
        self.wire = b""  # the last data phase, raw

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def peek(self) -> None:
        """Note whether more input is already waiting before we reply."""
        self.sock.setblocking(False)
        try:
            self._fill()
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.setblocking(True)
        self.had_early_input = b"\r\n" in self.buffer

    def readline(self) -> str | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read_data(self, drop_half_way: bool) -> bytes | None:
        if drop_half_way:
            self._fill()
            return None
        while True:
            if self.buffer.startswith(b".\r\n"):
                self.wire, self.buffer = b".\r\n", self.buffer[3:]
                return b""
            end = self.buffer.find(b"\r\n.\r\n")
            if end >= 0:
                raw, self.buffer = self.buffer[: end + 2], self.buffer[end + 5:]
                self.wire = raw + b".\r\n"
                raw = raw[1:] if raw.startswith(b".") else raw
                return raw.replace(b"\r\n.", b"\r\n")
            if not self._fill():
                return None

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())
