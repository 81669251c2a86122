"""The SMTP client protocol as a sans-I/O state machine (h11 style).

Feed the server's bytes with :meth:`ClientProtocol.receive_data` and pull
:meth:`ClientProtocol.next_event` until it returns :data:`NEED_DATA`.  Commands come
out as :class:`Send` events; message content is the adapter's to stream when asked
(:class:`SendContent` for DATA through :class:`DataEncoder`, :class:`SendChunk` for
BDAT).  Nothing here touches a socket, a file or a clock: timeouts are the adapter's,
which reports them with :meth:`ClientProtocol.connection_lost`.

The session goes greeting -> EHLO (HELO when EHLO is not understood) -> optionally
STARTTLS and EHLO again -> optionally AUTH -> ready; then one transaction after another
(MAIL, RCPT..., DATA or BDAT) on the same connection, and QUIT.  STARTTLS and AUTH are
slots: :class:`TlsPolicy` and :class:`ClientAuthenticator` switch them on.

Behaviour follows E-MailRelay 2.6's client: PIPELINING of MAIL and RCPT only (never
DATA) when both sides want it, BODY= and SMTPUTF8 parameters only when the server
offers them, the ``eightbitstrict``, ``smtputf8strict`` and ``binarymimestrict``
checks, BDAT only for BINARYMIME messages, RSET only after rejected recipients.
Beyond it: ``SIZE=`` when the server offers SIZE, and every outcome is classified as
delivered, deferred (4xx, connection trouble) or failed (5xx).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol

from emailrelay.util import xtext
from emailrelay.util.printable import printable
from emailrelay.util.sansio import NEED_DATA, Marker, Send

REPLY_LINE_LIMIT = 4096  # octets in one reply line (RFC 5321 asks for 512)
REPLY_SIZE_LIMIT = 64 * 1024  # octets in one multi-line reply
BDAT_CHUNK_SIZE = 1 << 20


class ClientError(Exception):
    """The server said something that makes the connection unusable."""


# -- replies --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # the text of each line after the code and separator

    @property
    def text(self) -> str:
        """The reply's text on one line, as an administrator should read it."""
        return " ".join(" ".join(line.split()) for line in self.lines if line.strip())

    @property
    def error_text(self) -> str:
        return self.text or "error"

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ReplyParser:
    """Collects reply lines (``250-...``, ``250 ...``) into :class:`Reply` objects."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code = 0
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> bool:
        """Some received bytes are not part of a complete reply yet."""
        return bool(self._buffer)

    def next_reply(self) -> Reply | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > REPLY_LINE_LIMIT:
                    raise ClientError("overflow on input")
                return None
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            # Escaped: a bare CR or other control character in a reply must not reach a
            # log line, an envelope or (--immediate) our own client's reply.
            reply = self._line(printable(raw.decode("utf-8", "replace")))
            if reply is not None:
                return reply

    def _line(self, line: str) -> Reply | None:
        valid = (len(line) >= 3 and line[0] in "12345" and line[1:3].isdigit()
                 and (len(line) == 3 or line[3] in " -"))
        if not valid or (self._lines and int(line[:3]) != self._code):
            raise ClientError("invalid response")
        self._size += len(line)
        if self._size > REPLY_SIZE_LIMIT:
            raise ClientError("overflow on input")
        self._code = int(line[:3])
        self._lines.append(line[4:].strip(" \t"))
        if len(line) > 3 and line[3] == "-":
            return None
        reply = Reply(self._code, tuple(self._lines))
        self._lines, self._code, self._size = [], 0, 0
        return reply


# -- content ----------------------------------------------------------------------------------

class DataEncoder:
    """Turns message content into DATA-phase bytes, whole buffers at a time.

    Bare CR and bare LF become CRLF (so nothing downstream can read a smuggled end
    marker), lines starting with "." get another "." (RFC 5321 4.5.2), and
    :meth:`finish` closes with CRLF "." CRLF.  A CR at the end of one buffer is held
    back until the next shows whether an LF follows.
    """

    def __init__(self) -> None:
        self.at_line_start = True
        self.lines = 0
        self._held_cr = False

    def encode(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        crlf = chunk.count(b"\r\n")
        if chunk.count(b"\r") != crlf or chunk.count(b"\n") != crlf:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
            crlf = chunk.count(b"\n")
        self.lines += crlf
        out = chunk.replace(b"\r\n.", b"\r\n..")
        if self.at_line_start and out.startswith(b"."):
            out = b"." + out
        self.at_line_start = chunk.endswith(b"\r\n")
        return out

    def finish(self) -> bytes:
        tail = b""
        if self._held_cr:
            self._held_cr = False
            tail, self.at_line_start = b"\r\n", True
            self.lines += 1
        if not self.at_line_start:
            tail += b"\r\n"
            self.lines += 1
        return tail + b".\r\n"


# -- configuration, input and results --------------------------------------------------------

class TlsPolicy(Enum):
    """The STARTTLS slot (filled in by the TLS feature)."""

    NEVER = auto()
    IF_OFFERED = auto()  # --client-tls
    REQUIRED = auto()  # --client-tls-required


class ClientAuthenticator(Protocol):
    """The AUTH slot (:class:`emailrelay.auth.client.SaslClient`).

    ``choose`` picks a mechanism from the server's list (None: none fits; after a
    failure it is asked again without the mechanisms tried);
    ``initial`` gives the initial response (base64, or None to wait for a challenge);
    ``respond`` answers a 334 challenge (base64, or "*" to cancel);
    ``user`` is the name logged in with, for ``AUTH=`` on MAIL.
    """

    user: str

    def choose(self, offered: list[str], secure: bool) -> str | None: ...
    def initial(self, mechanism: str) -> str | None: ...
    def respond(self, mechanism: str, challenge: bytes) -> str: ...


@dataclass
class ClientConfig:
    ehlo_name: str = "localhost"
    pipelining: bool = False  # --client-smtp-config=pipelining
    eightbit_strict: bool = False
    smtputf8_strict: bool = True
    binarymime_strict: bool = True
    must_accept_all_recipients: bool = True  # not --forward-to-some
    bdat_chunk_size: int = BDAT_CHUNK_SIZE
    tls: TlsPolicy = TlsPolicy.NEVER
    secure_tunnel: bool = False  # TLS from the start (--client-tls-connection)
    authenticator: ClientAuthenticator | None = None
    anonymous: bool = False  # --anonymous=client: AUTH=<> on MAIL, hiding the user


@dataclass
class OutgoingMessage:
    mail_from: str
    recipients: list[str]
    body_type: str = "7bit"  # as in the envelope: 7bit, 8bit, binarymime, unknown
    utf8_mailboxes: bool = False
    size: int = 0  # content octets
    auth_out: str = ""  # the envelope's MailFromAuthOut: "" (the login), "<>" or xtext


class Result(Enum):
    DELIVERED = auto()  # the server took responsibility (250 for the data)
    DEFERRED = auto()  # try again later (4xx, timeouts, dropped connections)
    FAILED = auto()  # permanent (5xx, or a message this server cannot take)


@dataclass(frozen=True)
class Rejection:
    recipient: str
    reply: Reply

    @property
    def permanent(self) -> bool:
        return self.reply.code >= 500


@dataclass
class Outcome:
    result: Result
    reason: str = ""  # for the envelope's Reason field ("" when delivered)
    code: int = 0  # for the ReasonCode field
    rejected: list[Rejection] = field(default_factory=list)  # with --forward-to-some

    @property
    def delivered(self) -> bool:
        return self.result is Result.DELIVERED


# -- events -------------------------------------------------------------------------------------

@dataclass
class SendContent:
    """354 received: stream the content through :attr:`ClientProtocol.encoder`, write
    its ``finish()``, then call :meth:`ClientProtocol.content_sent`."""


@dataclass
class SendChunk:
    """Write ``size`` content octets from ``offset`` as they are (after the BDAT line)."""

    offset: int
    size: int


@dataclass
class StartTls:
    """STARTTLS accepted: do the handshake, then call :meth:`ClientProtocol.tls_started`."""


@dataclass
class SessionReady:
    """Call :meth:`ClientProtocol.send_message` or :meth:`ClientProtocol.quit`."""

    extensions: frozenset[str]


@dataclass
class MessageDone:
    outcome: Outcome


@dataclass
class ProtocolWarning:
    text: str


@dataclass
class Closed:
    """The session is over: ``error`` is None after a clean QUIT."""

    error: str | None


Event = (Send | SendContent | SendChunk | StartTls | SessionReady | MessageDone | ProtocolWarning
         | Closed | Marker)


class State(Enum):
    GREETING = auto()
    EHLO = auto()
    HELO = auto()
    STARTTLS = auto()
    TLS_HANDSHAKE = auto()
    AUTH = auto()
    READY = auto()
    MAIL = auto()  # replies to MAIL and RCPT outstanding
    DATA = auto()  # DATA sent, waiting for 354
    CONTENT = auto()  # the adapter is streaming content
    DOT = auto()  # waiting for the reply to the end of the data
    BDAT = auto()
    RSET = auto()
    QUIT = auto()
    CLOSED = auto()


# -- the protocol ------------------------------------------------------------------------------

class ClientProtocol:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.state = State.GREETING
        self.secure = config.secure_tunnel
        self.authenticated = False
        self.extensions: frozenset[str] = frozenset()
        self.auth_mechanisms: list[str] = []
        self.size_limit = 0  # the server's SIZE, 0 if none
        self.encoder: DataEncoder | None = None
        self._parser = ReplyParser()
        self._events: list[Event] = []
        self._message: OutgoingMessage | None = None
        self._expect: list[str] = []  # recipients whose RCPT replies are still due
        self._pipelined = False
        self._greeted = False
        self._mail_reply: Reply | None = None
        self._accepted: list[str] = []
        self._rejected: list[Rejection] = []
        self._pending_outcome: Outcome | None = None  # reported once RSET is answered
        self._chunks: list[tuple[int, int, bool]] = []
        self._auth_mechanism = ""
        self._auth_tried: list[str] = []
        self._warned: set[str] = set()

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        if not data:
            self.connection_lost("connection closed by the remote server")
            return
        self._parser.feed(data)
        try:
            while self.state is not State.CLOSED:
                reply = self._parser.next_reply()
                if reply is None:
                    break
                self._on_reply(reply)
        except ClientError as e:
            self._fail_connection(str(e))

    def next_event(self) -> Event:
        if self._events:
            return self._events.pop(0)
        return NEED_DATA

    def greeting_timeout(self, seconds: float) -> None:
        """The --prompt-timeout passed without a greeting: say EHLO anyway."""
        if self.state is State.GREETING:
            self._warn(f"timeout: no greeting from remote server after {seconds:g}s: "
                       "continuing")
            self._ehlo()

    def connection_lost(self, reason: str) -> None:
        """The connection failed (dropped, timed out): end the session with an error."""
        if self.state is State.QUIT:
            self._close(None)
        elif self.state is not State.CLOSED:
            self._fail_connection(reason)

    # -- commands from the adapter ------------------------------------------------------------

    def send_message(self, message: OutgoingMessage) -> None:
        assert self.state is State.READY, f"not ready for a message: {self.state}"
        refusal = self._check_sendable(message)
        if refusal:
            self._events.append(MessageDone(Outcome(Result.FAILED, refusal, 0)))
            self._ready()
            return
        self._message = message
        self._accepted, self._rejected, self._mail_reply = [], [], None
        mail = self._mail_command(message)
        rcpts = [f"RCPT TO:<{to}>" for to in message.recipients]
        self.state = State.MAIL
        self._pipelined = self.config.pipelining and "PIPELINING" in self.extensions
        if self._pipelined:
            self._expect = ["", *message.recipients]  # "" stands for MAIL
            self._send(mail, *rcpts)
        else:
            self._expect = [""]
            self._send(mail)

    def content_sent(self) -> None:
        """The encoder's output including ``finish()`` has been written."""
        assert self.state is State.CONTENT
        self.state = State.DOT

    def tls_started(self) -> None:
        assert self.state is State.TLS_HANDSHAKE
        self.secure = True
        self.state = State.EHLO
        self._send(f"EHLO {self.config.ehlo_name}")

    def quit(self) -> None:
        if self.state in (State.CLOSED, State.QUIT):
            return
        self.state = State.QUIT
        self._send("QUIT")

    # -- internals ------------------------------------------------------------------------------

    def _send(self, *lines: str, sensitive: bool = False) -> None:
        self._events.append(Send(list(lines), sensitive))

    def _warn(self, text: str) -> None:
        self._events.append(ProtocolWarning(text))

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            self._warn(text)

    def _close(self, error: str | None) -> None:
        self.state = State.CLOSED
        # Requests still queued (replies that came in one read) are void: the adapter must
        # not send content or a message, or start TLS, on a closed session.
        self._events = [e for e in self._events
                        if not isinstance(e, SessionReady | SendContent | SendChunk | StartTls)]
        self._events.append(Closed(error))

    def _fail_connection(self, error: str) -> None:
        """A connection-level failure: any message in hand is deferred, not failed."""
        if self._message is not None:
            self._events.append(MessageDone(Outcome(Result.DEFERRED, error, 0)))
            self._message = None
        self._close(error)

    def _unexpected(self, reply: Reply) -> None:
        self._warn(f"client protocol: unexpected response [{reply}]")
        self._fail_connection(f"unexpected response: {reply}")

    def _on_reply(self, reply: Reply) -> None:
        if reply.code == 421 and self.state not in (State.QUIT, State.RSET):
            # The server is closing the connection: nothing here is the message's fault.
            self._fail_connection(f"service not available: {reply}")
            return
        handler = self._HANDLERS.get(self.state)
        if handler is None:
            self._unexpected(reply)
        else:
            handler(self, reply)

    # session set-up

    def _on_greeting(self, reply: Reply) -> None:
        self._greeted = True
        if reply.code != 220:
            self._fail_connection(f"no service: {reply}")
            return
        self._ehlo()

    def _ehlo(self) -> None:
        self.state = State.EHLO
        self._send(f"EHLO {self.config.ehlo_name}")

    def _on_ehlo(self, reply: Reply) -> None:
        if not self._greeted and not self.secure:
            self._greeted = True  # a late greeting after --prompt-timeout: EHLO is sent
            if reply.code == 220:
                return
        if reply.code == 250:
            self._parse_extensions(reply)
            self._after_hello()
        elif reply.code in (500, 501, 502) and not self.secure:
            if self.config.tls is TlsPolicy.REQUIRED:
                self._fail_connection("tls is mandated but the server cannot do esmtp")
                return
            self.state = State.HELO
            self._send(f"HELO {self.config.ehlo_name}")
        else:
            self._unexpected(reply)

    def _on_helo(self, reply: Reply) -> None:
        if reply.code != 250:
            self._unexpected(reply)
            return
        self.extensions = frozenset()
        self._after_hello()

    def _parse_extensions(self, reply: Reply) -> None:
        keywords = set()
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            keyword = words[0].upper()
            keywords.add(keyword)
            if keyword == "AUTH":
                self.auth_mechanisms = [w.upper() for w in words[1:]]
            elif keyword == "SIZE" and len(words) > 1 and words[1].isdigit():
                self.size_limit = int(words[1])
        self.extensions = frozenset(keywords)

    def _after_hello(self) -> None:
        tls = self.config.tls
        if not self.secure and tls is not TlsPolicy.NEVER:
            offered = "STARTTLS" in self.extensions
            if offered:
                self.state = State.STARTTLS
                self._send("STARTTLS")
                return
            if tls is TlsPolicy.REQUIRED:
                self._fail_connection("tls is mandated but the server cannot do starttls")
                return
        auth = self.config.authenticator
        if auth is not None and not self.authenticated:
            if "AUTH" not in self.extensions:
                self._fail_connection("authentication is not supported by the remote smtp "
                                      "server")
                return
            mechanism = auth.choose(self.auth_mechanisms, self.secure)
            if mechanism is None:
                self._fail_connection("cannot do authentication: check for a compatible "
                                      "client secret")
                return
            self._auth(mechanism)
            return
        self._ready()

    def _auth(self, mechanism: str) -> None:
        auth = self.config.authenticator
        assert auth is not None
        self._auth_mechanism = mechanism
        self._auth_tried.append(mechanism)
        initial = auth.initial(mechanism)
        self.state = State.AUTH
        self._send(f"AUTH {mechanism}" + (f" {initial}" if initial is not None else ""),
                   sensitive=initial is not None)

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code == 220:
            self.state = State.TLS_HANDSHAKE
            if self._parser.pending:  # sent in plaintext after the 220: never trust it
                self._warn("ignoring data the server sent after its starttls response")
            self._parser = ReplyParser()
            self._events.append(StartTls())
        else:
            self._fail_connection(f"starttls rejected: {reply}")

    def _on_auth(self, reply: Reply) -> None:
        auth = self.config.authenticator
        assert auth is not None
        mechanism = self._auth_mechanism
        if reply.code == 334:
            text = reply.lines[0].strip() if reply.lines else ""
            try:
                challenge = base64.b64decode(text, validate=True) if text != "=" else b""
            except ValueError:
                if mechanism != "PLAIN":  # (a PLAIN server has nothing to say: go on)
                    self._send("*")  # RFC 4954: cancel an exchange we cannot follow
                    return
                challenge = b""
            self._send(auth.respond(mechanism, challenge), sensitive=True)
        elif 200 <= reply.code < 300:
            self.authenticated = True
            self._ready()
        else:
            failure = (f"authentication failed using mechanism [{mechanism.lower()}]: "
                       f"[{reply.error_text}]")
            untried = [m for m in self.auth_mechanisms if m not in self._auth_tried]
            following = auth.choose(untried, self.secure) if untried else None
            if following is None:
                self._fail_connection(failure)
            else:
                self._warn(f"{failure}: trying [{following.lower()}]")
                self._auth(following)

    def _ready(self) -> None:
        self.state = State.READY
        self._message = None
        self._events.append(SessionReady(self.extensions))

    # transactions

    def _check_sendable(self, m: OutgoingMessage) -> str | None:
        """E-MailRelay's checks before MAIL: a reason to fail the message, or None."""
        c, ext = self.config, self.extensions
        if m.body_type == "8bit" and "8BITMIME" not in ext:
            if c.eightbit_strict:
                return "cannot send 8-bit message to 7-bit server"
            self._warn_once("sending an eight-bit message to a server that has not "
                            "advertised the 8BITMIME extension")
        if m.body_type == "binarymime" and not {"BINARYMIME", "CHUNKING"} <= ext:
            if c.binarymime_strict:
                return "cannot send binarymime message to a non-chunking server"
            self._warn_once("sending a binarymime message to a server that has not "
                            "advertised the BINARYMIME/CHUNKING extension")
        if m.utf8_mailboxes and "SMTPUTF8" not in ext:
            if c.smtputf8_strict:
                return "cannot send utf8 message to non-smtputf8 server"
            self._warn_once("sending a message with utf8 mailbox names to a server that "
                            "has not advertised the SMTPUTF8 extension")
        return None

    def _mail_command(self, m: OutgoingMessage) -> str:
        ext = self.extensions
        params = ""
        if "8BITMIME" in ext and m.body_type == "7bit":
            params += " BODY=7BIT"
        elif "8BITMIME" in ext and m.body_type == "8bit":
            params += " BODY=8BITMIME"
        elif m.body_type == "binarymime" and {"BINARYMIME", "CHUNKING"} <= ext:
            params += " BODY=BINARYMIME"
        if "SMTPUTF8" in ext and m.utf8_mailboxes:
            params += " SMTPUTF8"
        if "SIZE" in ext:
            params += f" SIZE={m.size}"
        if self.authenticated:
            params += f" AUTH={self._auth_parameter(m)}"
        return f"MAIL FROM:<{m.mail_from}>{params}"

    def _auth_parameter(self, m: OutgoingMessage) -> str:
        """E-MailRelay's policy: the login name unless MailFromAuthOut says otherwise."""
        user = self.config.authenticator.user if self.config.authenticator else ""
        if self.config.anonymous:
            return "<>"
        if not m.auth_out and user:
            return xtext.encode(user)
        if m.auth_out and xtext.valid(m.auth_out):
            return m.auth_out
        return "<>"

    def _on_mail(self, reply: Reply) -> None:
        assert self._message is not None
        who = self._expect.pop(0)
        if who == "":  # the reply to MAIL
            self._mail_reply = reply
            if not self._pipelined:
                if 200 <= reply.code < 300:
                    self._next_rcpt()
                else:
                    self._recipients_done()
                return
        else:
            mail_ok = self._mail_reply is not None and 200 <= self._mail_reply.code < 300
            if mail_ok and reply.code < 400:  # E-MailRelay counts any positive reply
                self._accepted.append(who)
            elif mail_ok:
                self._rejected.append(Rejection(who, reply))
            if not self._pipelined:
                self._next_rcpt()
                return
        if not self._expect:
            self._recipients_done()

    def _next_rcpt(self) -> None:
        assert self._message is not None
        done = len(self._accepted) + len(self._rejected)
        if done < len(self._message.recipients):
            to = self._message.recipients[done]
            self._expect = [to]
            self._send(f"RCPT TO:<{to}>")
        else:
            self._recipients_done()

    def _recipients_done(self) -> None:
        m = self._message
        assert m is not None and self._mail_reply is not None
        mail = self._mail_reply
        if not 200 <= mail.code < 300:
            self._finish(_from_reply(mail, ""))
            return
        rejected = self._rejected
        if rejected and (self.config.must_accept_all_recipients or not self._accepted):
            words = ("one or more recipients rejected" if self.config.must_accept_all_recipients
                     else "all recipients rejected")
            permanent = [r for r in rejected if r.permanent]
            first = (permanent or rejected)[0]
            outcome = Outcome(Result.FAILED if permanent else Result.DEFERRED,
                              f"{words}: {_describe(rejected)}", first.reply.code)
            self._reset(outcome)
            return
        if m.body_type == "binarymime" and {"BINARYMIME", "CHUNKING"} <= self.extensions:
            self._plan_chunks(m.size)
            self._next_chunk()
        else:
            self.state = State.DATA
            self._send("DATA")

    def _on_data(self, reply: Reply) -> None:
        if reply.code == 354:
            self.state = State.CONTENT
            self.encoder = DataEncoder()
            self._events.append(SendContent())
        elif reply.code >= 400:
            self._reset(_from_reply(reply, ""))
        else:
            self._unexpected(reply)

    def _plan_chunks(self, size: int) -> None:
        step = max(64, self.config.bdat_chunk_size)
        if size + 5 <= step:
            self._chunks = [(0, size, True)]
            return
        self._chunks = [(offset, min(step, size - offset), offset + step >= size)
                        for offset in range(0, size, step)]

    def _next_chunk(self) -> None:
        offset, size, last = self._chunks.pop(0)
        self.state = State.BDAT
        self._send(f"BDAT {size}{' LAST' if last else ''}")
        self._events.append(SendChunk(offset, size))

    def _on_bdat(self, reply: Reply) -> None:
        if 200 <= reply.code < 300:
            if self._chunks:
                self._next_chunk()
            else:
                self._final(reply)
        elif reply.code >= 400:
            outcome = _from_reply(reply, "")
            if self._chunks:
                self._chunks = []
                self._reset(outcome)
            else:
                self._finish(outcome)
        else:
            self._unexpected(reply)

    def _on_dot(self, reply: Reply) -> None:
        if 200 <= reply.code < 300:
            self._final(reply)
        elif reply.code >= 400:
            self._finish(_from_reply(reply, ""))
        else:
            self._unexpected(reply)

    def _final(self, reply: Reply) -> None:
        if self._rejected:  # --forward-to-some: delivered, but not to everyone
            self._finish(Outcome(Result.DELIVERED,
                                 f"one or more recipients rejected: {_describe(self._rejected)}",
                                 0, list(self._rejected)))
        else:
            self._finish(Outcome(Result.DELIVERED))

    def _reset(self, outcome: Outcome) -> None:
        self._pending_outcome = outcome
        self.state = State.RSET
        self._send("RSET")

    def _on_rset(self, reply: Reply) -> None:
        outcome = self._pending_outcome
        assert outcome is not None
        self._pending_outcome = None
        if reply.code == 421:
            self._finish(outcome, ready=False)
            self._close(f"service not available: {reply}")
        else:
            self._finish(outcome)

    def _finish(self, outcome: Outcome, *, ready: bool = True) -> None:
        self._message = None
        self.encoder = None
        self._events.append(MessageDone(outcome))
        if ready:
            self._ready()

    def _on_quit(self, reply: Reply) -> None:
        self._close(None)

    _HANDLERS = {
        State.GREETING: _on_greeting, State.EHLO: _on_ehlo, State.HELO: _on_helo,
        State.STARTTLS: _on_starttls, State.AUTH: _on_auth, State.MAIL: _on_mail,
        State.DATA: _on_data, State.DOT: _on_dot, State.BDAT: _on_bdat,
        State.RSET: _on_rset, State.QUIT: _on_quit,
    }


def _from_reply(reply: Reply, prefix: str) -> Outcome:
    """A 4xx defers, a 5xx fails; the Reason is the server's own text."""
    result = Result.FAILED if reply.code >= 500 else Result.DEFERRED
    return Outcome(result, prefix + reply.error_text, reply.code)


def _describe(rejected: list[Rejection]) -> str:
    return "; ".join(f"<{r.recipient}> {r.reply}" for r in rejected)
