"""The SMTP server protocol as a sans-I/O state machine.

Feed received bytes with :meth:`ServerProtocol.receive_data` and pull
:func:`ServerProtocol.next_event` until it returns :data:`NEED_DATA` (read more) or
:data:`PAUSED` (the adapter owes a decision: call :meth:`message_stored`,
:meth:`recipient_checked` and so on).  Replies come out as :class:`Send` events;
nothing here touches a socket, a file or a clock.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol

from emailrelay.auth.sasl import Mechanism, Outcome
from emailrelay.smtp import replies
from emailrelay.smtp.address import AddressError, PathArgument, parse_path
from emailrelay.smtp.dataphase import DataScanner
from emailrelay.util.printable import printable
from emailrelay.util.sansio import NEED_DATA as NEED_DATA  # re-exported for the adapters
from emailrelay.util.sansio import PAUSED as PAUSED
from emailrelay.util.sansio import Marker, Send, ServerCore, Trace

COMMAND_LINE_LIMIT = 4096  # RFC 5321 asks for 512; extensions need more
AUTH_LINE_LIMIT = 12288  # AUTH commands and responses (RFC 4954 section 4)
AUTH_FAILURE_LIMIT = 3  # failed logins before the connection is closed
RECIPIENT_LIMIT = 1000  # RFC 5321 requires at least 100
BDAT_CHUNK_READ = 1 << 16


# -- events ---------------------------------------------------------------------------------

@dataclass
class MessageStart:
    """DATA or the first BDAT was accepted: create the spool files."""

    transaction: Transaction


@dataclass
class MessageData:
    data: bytes


@dataclass
class MessageComplete:
    """The whole message has arrived: store it, then call :meth:`message_stored`."""

    transaction: Transaction


@dataclass
class MessageAbort:
    """Throw away the partial message (too big, RSET, bad content)."""

    reason: str


@dataclass
class CheckRecipient:
    """Verify a recipient, then call :meth:`recipient_checked` (only with a verifier)."""

    address: PathArgument
    transaction: Transaction


@dataclass
class VerifyRequest:
    """VRFY with a verifier configured: call :meth:`vrfy_checked`."""

    address: str


@dataclass
class StartTls:
    """Reply sent: upgrade the connection, then call :meth:`tls_started`."""


@dataclass
class AuthDone:
    """An AUTH exchange ended: log it; after a failure, wait before the reply that follows."""

    outcome: Outcome


@dataclass
class Close:
    """Send nothing more: close the connection (``reason`` empty after QUIT)."""

    reason: str


@dataclass
class ProtocolWarning:
    """Something to log at warning level, once."""

    text: str


@dataclass
class Rejected:
    """A message refused for what it is (its size, its recipients, its content); the
    reason is what the metrics count it under."""

    reason: str


@dataclass
class Notice:
    """Something to log at info level about the client (the adapter adds its address)."""

    text: str


Event = (Send | MessageStart | MessageData | MessageComplete | MessageAbort | CheckRecipient
         | VerifyRequest | StartTls | AuthDone | Close | Trace | ProtocolWarning | Notice
         | Rejected
         | Marker)


# -- configuration and transaction state ----------------------------------------------------

@dataclass
class Recipient:
    raw: str
    address: str  # possibly rewritten by a verifier
    local: bool = False  # a local mailbox (To-Local)
    utf8: bool = False


@dataclass
class Transaction:
    """What the client said for one message."""

    raw_from: str = ""
    mail_from: str = ""
    body: str = ""  # the BODY= value, upper case, "" if none
    smtputf8: bool = False
    utf8_mailboxes: bool = False
    size_hint: int = 0
    auth_param: str | None = None  # AUTH= on MAIL, xtext
    recipients: list[Recipient] = field(default_factory=list)
    bdat: bool = False


class Authenticator(Protocol):
    """The AUTH slot (:class:`emailrelay.auth.server.ServerAuth`): with one, MAIL and VRFY
    need a login unless the client's address is trusted (``ServerConfig.trusted``)."""

    def mechanisms(self, secure: bool) -> list[str]: ...
    def start(self, mechanism: str) -> Mechanism | None: ...


@dataclass
class ServerConfig:
    domain: str = "localhost"
    max_size: int = 0  # 0: no limit
    pipelining: bool = True
    chunking: bool = False
    smtputf8: bool = False
    smtputf8_strict: bool = False
    strict_parsing: bool = True
    alabels: bool = True
    anonymous_server: bool = False  # terse greeting and EHLO text
    vrfy_enabled: bool = True
    verify_recipients: bool = False  # emit CheckRecipient instead of accepting all
    tls_available: bool = False  # STARTTLS may be offered
    tls_required: bool = False  # MAIL and AUTH only after TLS
    authenticator: Authenticator | None = None
    trusted: str | None = None  # the keyword of a "server none" line trusting the client
    enabled: bool = True  # false: "smtp disable" from the admin interface
    trace: bool = False  # emit Trace events for the --verbose protocol trace


class State(Enum):
    START = auto()  # before HELO/EHLO
    IDLE = auto()  # no transaction
    GOT_MAIL = auto()
    GOT_RCPT = auto()
    DATA = auto()  # receiving DATA content
    BDAT = auto()  # receiving a BDAT chunk
    CHUNKING = auto()  # between BDAT chunks
    MUST_RESET = auto()  # after a protocol error inside a transaction
    AUTH = auto()  # in a SASL exchange
    CLOSED = auto()


class ServerProtocol(ServerCore):
    TOO_MANY_ERRORS = replies.TOO_MANY_ERRORS

    def __init__(self, config: ServerConfig) -> None:
        super().__init__()
        self.config = config
        self.state = State.START
        self.secure = False
        self.authenticated_user: str | None = None
        self.auth_mechanism: str | None = None
        self.auth_failures = 0
        self._mechanism: Mechanism | None = None  # the SASL exchange in progress
        self.helo_name = ""
        self.esmtp = False
        self.transaction = Transaction()
        self._pending_recipient: PathArgument | None = None
        self._scanner: DataScanner | None = None
        self._message_size = 0
        self._message_failed: tuple[str, str] | None = None  # (reply, reason) for the end
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_chunk_size = 0
        self._discard_line = False
        self._warned_syntax = False
        self._message_open = False  # MessageStart sent, no MessageComplete/Abort yet
        self._bdat_discard = False

    # -- input --------------------------------------------------------------------------------

    def greeting(self) -> Send:
        if not self.config.enabled:
            return Send([replies.DISABLED])
        return Send([replies.greeting(self.config.domain, self.config.anonymous_server)])

    def next_event(self) -> Event:
        return super().next_event()  # type: ignore[return-value]

    def _closed(self) -> bool:
        return self.state is State.CLOSED

    def _ended(self) -> None:
        self._abort_message("connection lost")
        self._close("disconnected before QUIT")

    def _step(self) -> bool:
        """Consume some input; return False when more input is needed."""
        if self.state is State.DATA:
            return self._step_data()
        if self.state is State.BDAT:
            return self._step_bdat()
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if self._too_long(self._buffer):
                # Swallow the over-long line up to its CRLF, then answer once.
                del self._buffer[:-1]
                self._discard_line = True
            return False
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if self._discard_line or self._too_long(raw):
            self._discard_line = False
            if self.state is State.AUTH:
                self._end_exchange()
            self._client_error(replies.LINE_TOO_LONG)
            return True
        line = raw.decode("utf-8", "surrogateescape")
        if self.config.trace:
            self._trace_line(line)
        if self.state is State.AUTH:
            self._auth_line(line)
        else:
            self._command(line)
        return True

    def _too_long(self, line: bytes | bytearray) -> bool:
        """Over the limit for this line: an AUTH line (and a SASL response) may be longer;
        which limit applies is only worked out for a line over the shorter one."""
        if len(line) <= COMMAND_LINE_LIMIT:
            return False
        authenticating = self.state is State.AUTH or line[:5].upper() == b"AUTH "
        return len(line) > (AUTH_LINE_LIMIT if authenticating else COMMAND_LINE_LIMIT)

    def _trace_line(self, line: str) -> None:
        words = line.split()
        if self.state is State.AUTH:
            text = "rx<<: [authentication response not logged]"
        elif len(words) > 2 and words[0].upper() == "AUTH":  # an initial response
            text = f'rx<<: "{printable(" ".join(words[:2]))} [initial response not logged]"'
        else:
            shown = line.encode("unicode_escape", "backslashreplace").decode("ascii")
            text = f'rx<<: "{shown}"'
        self._events.append(Trace(text))

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._events.append(Close(reason))

    # -- commands -------------------------------------------------------------------------

    def _command(self, line: str) -> None:
        verb = line.split(None, 1)[0].upper() if line.strip() else ""
        handler = self._HANDLERS.get(verb)
        if handler is None or (verb == "BDAT" and not self.config.chunking) or (
                verb == "STARTTLS" and not self.config.tls_available):
            self._client_error(replies.UNRECOGNISED)
            return
        if "\0" in line and verb not in ("MAIL", "RCPT"):
            self._client_error(replies.UNRECOGNISED)
            return
        handler(self, line)

    def _argument(self, line: str) -> str:
        parts = line.split(None, 1)
        return parts[1].strip() if len(parts) > 1 else ""

    def _do_ehlo(self, line: str) -> None:
        self._hello(line, esmtp=True)

    def _do_helo(self, line: str) -> None:
        self._hello(line, esmtp=False)

    def _hello(self, line: str, esmtp: bool) -> None:
        name = self._argument(line)
        if not name:
            self._client_error(replies.PARAMETER_REQUIRED)
            return
        self._reset_transaction()
        self.helo_name = name
        self.esmtp = esmtp
        self.state = State.IDLE
        if esmtp:
            # As in E-MailRelay, EHLO starts a new session: the client logs in again.
            self.authenticated_user = self.auth_mechanism = None
            self._events.append(Send(replies.ehlo(self.config.domain,
                                                  self.config.anonymous_server,
                                                  self.extensions())))
        else:
            self._emit(replies.HELO_OK)

    def extensions(self) -> list[str]:
        c = self.config
        ext = []
        if c.max_size:
            ext.append(f"SIZE {c.max_size}")
        mechanisms = self._mechanisms(self.secure)
        if mechanisms and self.authenticated_user is None:
            ext.append("AUTH " + " ".join(mechanisms))
        if c.tls_available and not self.secure:
            ext.append("STARTTLS")
        if c.vrfy_enabled:
            ext.append("VRFY")
        if c.chunking:
            ext += ["CHUNKING", "BINARYMIME"]
        if c.pipelining:
            ext.append("PIPELINING")
        if c.smtputf8:
            ext.append("SMTPUTF8")
        ext.append("8BITMIME")
        return ext

    def _do_mail(self, line: str) -> None:
        if self.state is not State.IDLE:
            self._client_error(replies.OUT_OF_SEQUENCE)
            return
        c = self.config
        if not c.enabled:
            self._emit(replies.DISABLED)
            return
        refusal = self._access_refusal()
        if refusal:
            self._emit(refusal)
            return
        try:
            arg = parse_path(line, "FROM:", strict=c.strict_parsing, alabels=c.alabels)
        except AddressError as e:
            self._syntax_warning(e)
            self._client_error(replies.mail_error(str(e)))
            return
        smtputf8 = "SMTPUTF8" in arg.params
        if arg.utf8_local and not smtputf8 and c.smtputf8_strict:
            self._client_error(replies.mail_error(
                "invalid character in mailbox name: not using smptutf8"))
            return
        body = arg.params.get("BODY", "").upper()
        if body not in ("", "7BIT", "8BITMIME", "BINARYMIME") or (
                body == "BINARYMIME" and not c.chunking):
            self._client_error(replies.mail_error("invalid mail-from parameter"))
            return
        try:
            size = int(arg.params.get("SIZE", "0") or 0)
        except ValueError:
            size = 0
        if c.max_size and size > c.max_size:
            self._refuse(replies.SIZE_EXCEEDED, "size")
            return
        self.transaction = Transaction(
            raw_from=arg.raw, mail_from=arg.address, body=body, smtputf8=smtputf8,
            utf8_mailboxes=arg.utf8_local, size_hint=size, auth_param=arg.params.get("AUTH"))
        self.state = State.GOT_MAIL
        if not arg.address:  # a bounce, probably; E-MailRelay's fail2ban filter counts these
            self._warn("empty MAIL-FROM return path")
        self._emit(replies.mail_ok(arg.raw))

    def _access_refusal(self) -> str | None:
        """The 530 reply when authentication or TLS must come first, else None."""
        c = self.config
        starttls = c.tls_available and not self.secure
        if c.authenticator and self.authenticated_user is None and c.trusted is None:
            self._events.append(Notice("server authentication enabled but not a trusted "
                                       "address"))
            return replies.AUTH_REQUIRED_STARTTLS if c.tls_required and starttls else (
                replies.AUTH_REQUIRED)
        if c.tls_required and not self.secure:
            return replies.ENCRYPTION_REQUIRED_STARTTLS if starttls else (
                replies.ENCRYPTION_REQUIRED)
        return None

    @property
    def auth_id(self) -> str:
        """E-MailRelay's authentication id: the user logged in, or the keyword of the
        secrets line that trusts the client (for the envelope and the verifier)."""
        if self.authenticated_user is not None:
            return self.authenticated_user
        return (self.config.trusted or "") if self.config.authenticator else ""

    def _syntax_warning(self, error: AddressError) -> None:
        if str(error).startswith("missing angle brackets") and not self._warned_syntax:
            self._warned_syntax = True
            self._events.append(ProtocolWarning(
                "invalid smtp command syntax from remote client: use "
                "--server-smtp-config=nostrictparsing to allow"))

    def _do_rcpt(self, line: str) -> None:
        if self.state not in (State.GOT_MAIL, State.GOT_RCPT):
            self._client_error(replies.OUT_OF_SEQUENCE)
            return
        c = self.config
        try:
            arg = parse_path(line, "TO:", strict=c.strict_parsing, alabels=c.alabels)
        except AddressError as e:
            self._syntax_warning(e)
            self._client_error(replies.rcpt_error(str(e)))
            return
        if arg.address == "":
            self._client_error(replies.rcpt_error("invalid mailbox name"))
            return
        if arg.utf8_local and not self.transaction.smtputf8 and c.smtputf8_strict:
            self._client_error(replies.rcpt_error(
                "invalid character in mailbox name: not using smtputf8"))
            return
        if len(self.transaction.recipients) >= RECIPIENT_LIMIT:
            self._note_refusal(replies.TOO_MANY_RECIPIENTS)
            self._refuse(replies.TOO_MANY_RECIPIENTS, "recipients")
            return
        if c.verify_recipients:
            self._pending_recipient = arg
            self._waiting = True
            self._events.append(CheckRecipient(arg, self.transaction))
            return
        self._add_recipient(arg, arg.address, local=False)

    def _add_recipient(self, arg: PathArgument, address: str, local: bool) -> None:
        self.transaction.recipients.append(
            Recipient(raw=arg.raw, address=address, local=local, utf8=arg.utf8_local))
        if arg.utf8_local and not local:
            self.transaction.utf8_mailboxes = True
        self.state = State.GOT_RCPT
        self._emit(replies.rcpt_ok(arg.raw, local))

    def recipient_checked(self, *, accepted: bool, address: str = "", local: bool = False,
                          reply: str = "", abort: bool = False) -> None:
        """The verifier's answer for the pending :class:`CheckRecipient`."""
        arg = self._pending_recipient
        assert self._waiting and arg is not None, "no recipient check pending"
        self._waiting = False
        self._pending_recipient = None
        if abort:
            self._close("address verifier abort")
        elif accepted:
            self._add_recipient(arg, address or arg.address, local)
        else:
            self._emit(reply or replies.rcpt_error("invalid mailbox"))

    def _do_data(self, line: str) -> None:
        if self.state is State.GOT_MAIL:
            self.state = State.IDLE
            self._emit(replies.NO_RECIPIENTS)
            return
        if self.state is not State.GOT_RCPT:
            self._client_error(replies.OUT_OF_SEQUENCE)
            return
        if self.transaction.body == "BINARYMIME":
            self.state = State.MUST_RESET
            self._client_error(replies.DATA_WITH_BINARYMIME)
            return
        self._begin_message()
        self.state = State.DATA
        self._scanner = DataScanner()
        self._emit(replies.START_DATA)
        if self.config.trace:
            self._events.append(Trace("rx<<: [message content not logged]"))

    def _begin_message(self) -> None:
        self._message_size = 0
        self._message_failed = None
        self._message_open = True
        self._events.append(MessageStart(self.transaction))

    def _abort_message(self, reason: str) -> None:
        if self._message_open:
            self._message_open = False
            self._events.append(MessageAbort(reason))

    def _do_bdat(self, line: str) -> None:
        words = line.split()
        size: int | None = None
        if len(words) in (2, 3) and words[1].isdigit() and len(words[1]) < 19:
            size = int(words[1])
        last = len(words) == 3 and words[2].upper() == "LAST"
        if size is None or (len(words) == 3 and not last) or (size == 0 and not last):
            self._client_error(replies.INVALID_ARGUMENT)
            return
        if self.state is State.GOT_RCPT:
            self.transaction.bdat = True
            self._begin_message()
            self._bdat_discard = False
        elif self.state is not State.CHUNKING:
            self._bdat_discard = True  # consume the chunk anyway to stay in step
        self._bdat_remaining = size
        self._bdat_last = last
        self._bdat_chunk_size = size
        self.state = State.BDAT

    def _do_rset(self, line: str) -> None:
        self._reset_transaction()
        if self.state is not State.START:
            self.state = State.IDLE
        self._emit(replies.RESET)

    def _reset_transaction(self) -> None:
        self._abort_message("reset")
        self._message_failed = None
        self.transaction = Transaction()

    def _do_noop(self, line: str) -> None:
        self._emit(replies.NOOP)

    def _do_quit(self, line: str) -> None:
        self._emit(replies.QUIT)
        self._close("")

    def _do_help(self, line: str) -> None:
        self._emit(*replies.HELP)

    def _do_vrfy(self, line: str) -> None:
        if not self.config.vrfy_enabled:
            self._emit(replies.VRFY_DISABLED)
            return
        refusal = self._access_refusal()
        if refusal:
            self._emit(refusal)
            return
        address = self._argument(line)
        if address.upper().endswith(" SMTPUTF8"):
            address = address[:-9].strip()
        address = address.strip("<>")
        if not address:
            self._emit(replies.VRFY_INVALID)
            return
        if self.config.verify_recipients:
            self._waiting = True
            self._events.append(VerifyRequest(address))
            return
        self._emit(replies.vrfy_remote(address))

    def vrfy_checked(self, reply: str = "", *, abort: bool = False) -> None:
        """The verifier's answer for the pending :class:`VerifyRequest`."""
        assert self._waiting
        self._waiting = False
        if abort:
            self._close("address verifier abort")
        else:
            self._emit(reply)

    def _do_expn(self, line: str) -> None:
        self._emit(replies.NOT_IMPLEMENTED)

    def _do_starttls(self, line: str) -> None:
        if self.secure or self.state not in (State.START, State.IDLE):
            self._client_error(replies.OUT_OF_SEQUENCE)
            return
        self._emit(replies.READY_FOR_TLS)
        # Anything pipelined after STARTTLS was sent in plaintext: it must not count.
        self._buffer.clear()
        self._waiting = True
        self._events.append(StartTls())

    def tls_started(self) -> None:
        """The TLS handshake succeeded: start again as RFC 3207 requires."""
        self._waiting = False
        self.secure = True
        self._buffer.clear()
        self._reset_transaction()
        self.state = State.START
        self.helo_name = ""

    # -- AUTH (RFC 4954), checks in E-MailRelay's order --------------------------------------

    def _mechanisms(self, secure: bool) -> list[str]:
        c = self.config
        if c.authenticator is None or (c.tls_required and not secure):
            return []
        return c.authenticator.mechanisms(secure)

    def _do_auth(self, line: str) -> None:
        if self.state is not State.IDLE:
            self._client_error(replies.OUT_OF_SEQUENCE)
            return
        words = line.split()
        mechanism = words[1].upper() if len(words) > 1 else ""
        initial = words[2] if len(words) > 2 else None
        sasl = self._auth_start(mechanism, initial)
        if sasl is None:
            return
        self._mechanism = sasl
        self.state = State.AUTH
        if initial is None:
            self._challenge(sasl.challenge())
        else:
            self._auth_response(b"" if initial == "=" else _base64(initial) or b"")

    def _auth_start(self, mechanism: str, initial: str | None) -> Mechanism | None:
        """The new exchange, or None once the refusal is sent."""
        offered = self._mechanisms(self.secure)
        auth = self.config.authenticator
        sasl = auth.start(mechanism) if auth and mechanism in offered else None
        if self.authenticated_user is not None:
            self._warn("too many AUTH requests")
            self._client_error(replies.OUT_OF_SEQUENCE)
        elif not offered and not self.secure and self._mechanisms(True):
            self._warn("rejecting authentication attempt without encryption")
            self._emit(replies.AUTH_NEEDS_TLS_STARTTLS if self.config.tls_available
                       else replies.BAD_MECHANISM)
        elif not offered:
            self._warn("client protocol error: AUTH requested but not advertised")
            self._emit(replies.NOT_IMPLEMENTED)
        elif sasl is None:
            self._warn(f"request for unsupported server AUTH mechanism: {printable(mechanism)}")
            self._emit(replies.BAD_MECHANISM)
        elif initial is not None and sasl.server_first:
            self._warn("unexpected initial-response with a server-first AUTH mechanism")
            self._emit(replies.INVALID_ARGUMENT)
        elif initial is not None and initial != "=" and _base64(initial) is None:
            self._warn("invalid base64 encoding of AUTH parameter")
            self._emit(replies.INVALID_ARGUMENT)
        else:
            return sasl
        return None

    def _warn(self, text: str) -> None:
        self._events.append(ProtocolWarning(text))

    def _note_refusal(self, reply: str) -> None:
        self._events.append(Notice(f"smtp command refused with \"{printable(reply)}\""))

    def _auth_line(self, line: str) -> None:
        text = line.strip()
        if text == "*":
            self._end_exchange()
            self._emit(replies.AUTH_CANCELLED)
            return
        data = _base64(text)
        if data is None:
            self._warn("invalid base64 encoding of authentication response")
            mechanism = self._mechanism.name if self._mechanism else ""
            self._auth_done(Outcome(False, "", mechanism, "invalid base64 encoding"))
            return
        self._auth_response(data)

    def _auth_response(self, data: bytes) -> None:
        assert self._mechanism is not None
        result = self._mechanism.respond(data)
        if isinstance(result, bytes):
            self._challenge(result)
        else:
            self._auth_done(result)

    def _challenge(self, data: bytes) -> None:
        self._emit("334 " + base64.b64encode(data).decode("ascii"))

    def _end_exchange(self) -> None:
        self._mechanism = None
        self.state = State.IDLE

    def _auth_done(self, outcome: Outcome) -> None:
        self._end_exchange()
        self._events.append(AuthDone(outcome))
        if outcome.ok:
            self.authenticated_user = outcome.user
            self.auth_mechanism = outcome.mechanism
            self._emit(replies.AUTH_OK)
            return
        self.auth_failures += 1
        if self.auth_failures >= AUTH_FAILURE_LIMIT:
            self._emit(replies.TOO_MANY_AUTH_FAILURES)
            self._close("too many failed logins")
        else:
            self._emit(replies.AUTH_FAILED)

    _HANDLERS: dict[str, Callable[[ServerProtocol, str], None]] = {
        "EHLO": _do_ehlo, "HELO": _do_helo, "MAIL": _do_mail, "RCPT": _do_rcpt,
        "DATA": _do_data, "BDAT": _do_bdat, "RSET": _do_rset, "NOOP": _do_noop,
        "QUIT": _do_quit, "HELP": _do_help, "VRFY": _do_vrfy, "EXPN": _do_expn,
        "STARTTLS": _do_starttls, "AUTH": _do_auth,
    }

    # -- message content ------------------------------------------------------------------

    def _step_data(self) -> bool:
        scanner = self._scanner
        assert scanner is not None
        if not self._buffer:
            return False
        segment = scanner.scan(self._buffer)
        if segment.consumed == 0:
            return False
        del self._buffer[: segment.consumed]
        self._content(segment.content)
        if segment.finished:
            self._scanner = None
            if self.config.trace:
                self._events.append(Trace('rx<<: "."'))
            if self._message_failed is None:
                if scanner.has_nul:
                    self._fail_message(replies.NUL_IN_DATA, "content")
                elif scanner.header_line_too_long:
                    self._fail_message(replies.HEADER_LINE_TOO_LONG, "content")
            if scanner.eight_bit and self.transaction.body in ("", "7BIT"):
                self.transaction.body = "8BITMIME"
            self._end_message()
        return True

    def _content(self, data: bytes) -> None:
        if not data or self._message_failed is not None:
            return
        self._message_size += len(data)
        limit = self.config.max_size
        if limit and self._message_size > limit:
            self._fail_message(replies.SIZE_EXCEEDED, "size")
            return
        self._events.append(MessageData(data))

    def _fail_message(self, reply: str, reason: str) -> None:
        if self._message_failed is None:
            self._message_failed = reply, reason
            self._abort_message(reply)

    def _refuse(self, reply: str, reason: str) -> None:
        self._events.append(Rejected(reason))
        self._emit(reply)

    def _end_message(self) -> None:
        failed = self._message_failed
        if failed is not None:
            self._message_failed = None
            self.transaction = Transaction()
            self.state = State.IDLE
            self._refuse(*failed)
            return
        self._waiting = True
        self._message_open = False
        self._events.append(MessageComplete(self.transaction))

    def message_stored(self, reply: str) -> None:
        """The outcome of :class:`MessageComplete`: the reply for the client."""
        assert self._waiting, "no message pending"
        self._waiting = False
        self.transaction = Transaction()
        self.state = State.IDLE
        self._emit(reply)

    def _step_bdat(self) -> bool:
        if self._bdat_remaining > 0:
            if not self._buffer:
                return False
            take = min(self._bdat_remaining, len(self._buffer))
            if not self._bdat_discard:
                self._content(bytes(self._buffer[:take]))
            del self._buffer[:take]
            self._bdat_remaining -= take
            if self._bdat_remaining > 0:
                return True
        if self._bdat_discard:
            self._bdat_discard = False
            in_transaction = self.transaction.mail_from or self.transaction.recipients
            self._reset_transaction()
            self.state = State.MUST_RESET if in_transaction else (
                State.IDLE if self.helo_name else State.START)
            self._client_error(replies.OUT_OF_SEQUENCE)
        elif self._bdat_last:
            self._end_message()
        else:
            self.state = State.CHUNKING
            self._emit(replies.bdat_chunk_ok(self._bdat_chunk_size))
        return True


def _base64(text: str) -> bytes | None:
    """Strict base64 (None if invalid), as RFC 4954 responses must be."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
