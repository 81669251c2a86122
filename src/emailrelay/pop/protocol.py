"""The POP3 server protocol (RFC 1939, RFC 2449, RFC 5034) as a sans-I/O state machine.

Feed received bytes with :meth:`PopProtocol.receive_data` and pull
:meth:`PopProtocol.next_event` until it returns :data:`NEED_DATA` (read more) or
:data:`PAUSED` (the adapter owes an answer: :meth:`~PopProtocol.maildrop_opened`,
:meth:`~PopProtocol.message_opened`, :meth:`~PopProtocol.committed` or
:meth:`~PopProtocol.tls_started`).  Nothing here touches a socket, a file or a clock.

States: AUTHORIZATION until a login succeeds and the maildrop is opened, then
TRANSACTION.  DELE only marks messages; they are removed (UPDATE) when QUIT arrives in
TRANSACTION, and never if the connection ends any other way.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from emailrelay.auth.sasl import Mechanism, Outcome, SaslServer
from emailrelay.pop import replies
from emailrelay.util.sansio import NEED_DATA as NEED_DATA  # re-exported for the adapters
from emailrelay.util.sansio import PAUSED as PAUSED
from emailrelay.util.sansio import Marker, Send, ServerCore, Trace

COMMAND_LINE_LIMIT = 512  # octets before CRLF; RFC 2449 asks for at least 255
AUTH_LINE_LIMIT = 12288  # SASL responses can be long (tokens)
_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass
class AuthResult:
    """A login attempt ended: log it; after a failure, wait before going on."""

    outcome: Outcome


@dataclass
class OpenMaildrop:
    """Lock and list ``user``'s maildrop, then call :meth:`PopProtocol.maildrop_opened`
    (or :meth:`PopProtocol.maildrop_refused`)."""

    user: str


@dataclass
class OpenMessage:
    """Open a listed message for RETR or TOP, then call :meth:`PopProtocol.message_opened`."""

    ref: Any


@dataclass
class StreamMessage:
    """Send the opened message's content, byte-stuffed, ending with "." (TOP: ``body_lines``)."""

    ref: Any
    body_lines: int | None


@dataclass
class Commit:
    """QUIT: remove these messages, then call :meth:`PopProtocol.committed`."""

    refs: list[Any]


@dataclass
class StartTls:
    """STLS accepted: start TLS, then call :meth:`PopProtocol.tls_started`."""


@dataclass
class Close:
    """Send nothing more and close (``reason`` is empty after QUIT)."""

    reason: str


Event = (Send | Trace | AuthResult | OpenMaildrop | OpenMessage | StreamMessage | Commit
         | StartTls | Close | Marker)


@dataclass(frozen=True)
class Listed:
    """One message of the opened maildrop: its RFC 1939 size, its UIDL and the adapter's
    handle for it."""

    size: int
    uidl: str
    ref: Any


@dataclass
class PopConfig:
    sasl: SaslServer
    apop_challenge: str | None = None  # the greeting's timestamp; None: no APOP
    tls_available: bool = False  # STLS may be offered (the TLS feature fills this in)
    tls_required: bool = False  # no login before STLS
    max_auth_failures: int = 3  # failed logins before the connection is closed


class State(Enum):
    AUTHORIZATION = auto()
    TRANSACTION = auto()
    CLOSED = auto()


_BEFORE_LOGIN = {"USER", "PASS", "APOP", "AUTH", "STLS"}
_AFTER_LOGIN = {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"}


class PopProtocol(ServerCore):
    TOO_MANY_ERRORS = replies.TOO_MANY_ERRORS

    def __init__(self, config: PopConfig) -> None:
        super().__init__()
        self.config = config
        self.state = State.AUTHORIZATION
        self.secure = False
        self.user: str | None = None  # the logged-in user
        self.auth_failures = 0
        self._discarding = False  # inside an over-long line
        self._mechanism: Mechanism | None = None  # a SASL exchange under way
        self._user_name: str | None = None  # from USER, for PASS
        self._apop = config.apop_challenge
        self._pending: Any = None  # what the adapter is answering for
        self._messages: list[Listed] = []
        self._deleted: set[int] = set()  # zero-based indexes

    # -- input --------------------------------------------------------------------------------

    def greeting(self) -> Send:
        return Send([replies.greeting(self._apop)])

    def next_event(self) -> Event:
        return super().next_event()  # type: ignore[return-value]

    def _closed(self) -> bool:
        return self.state is State.CLOSED

    def _ended(self) -> None:
        self._close("disconnected before QUIT")

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._buffer.clear()
        self._events.append(Close(reason))

    def _step(self) -> bool:
        """Handle one line; False when more input is needed."""
        limit = AUTH_LINE_LIMIT if self._mechanism else COMMAND_LINE_LIMIT
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > limit:
                del self._buffer[:-1]  # keep a possible CR; swallow up to the line end
                self._discarding = True
            return False
        raw = bytes(self._buffer[:end]).removesuffix(b"\r")
        del self._buffer[: end + 1]
        if self._discarding or len(raw) > limit:
            self._discarding = False
            self._mechanism = None
            self._client_error(replies.LINE_TOO_LONG)
            return True
        line = raw.decode("utf-8", "surrogateescape")
        if self._mechanism is not None:
            self._auth_response(line)
        else:
            self._command(line)
        return True

    # -- commands -------------------------------------------------------------------------

    def _command(self, line: str) -> None:
        words = line.split()
        verb = words[0].upper() if words else ""
        handler = self._HANDLERS.get(verb)
        self._events.append(Trace(self._loggable(verb, line)))
        if handler is None or "\0" in line:
            self._client_error(replies.UNKNOWN)
        elif self.state is State.AUTHORIZATION and verb in _AFTER_LOGIN:
            self._client_error(replies.NOT_LOGGED_IN)
        elif self.state is State.TRANSACTION and verb in _BEFORE_LOGIN:
            self._client_error(replies.ALREADY_LOGGED_IN)
        else:
            handler(self, line, words[1:])

    @staticmethod
    def _loggable(verb: str, line: str) -> str:
        if verb == "PASS":
            return "PASS [password not logged]"
        if verb == "AUTH":
            return " ".join(line.split()[:2])  # without the initial response
        return line

    def _args(self, args: list[str], low: int, high: int) -> bool:
        if low <= len(args) <= high:
            return True
        self._client_error(replies.INVALID_ARGUMENTS)
        return False

    def _do_capa(self, line: str, args: list[str]) -> None:
        lines = [replies.CAPABILITIES]
        login = self.state is State.AUTHORIZATION
        may_login = login and (self.secure or not self.config.tls_required)
        mechanisms = self.config.sasl.mechanisms() if may_login else []
        if "PLAIN" in mechanisms:
            lines.append("USER")
        lines += ["CAPA", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"]
        if login and self.config.tls_available and not self.secure:
            lines.append("STLS")
        if mechanisms:
            lines.append("SASL " + " ".join(mechanisms))
        self._emit(*lines, ".")

    def _do_quit(self, line: str, args: list[str]) -> None:
        if self.state is State.TRANSACTION and self._deleted:
            self._wait_for(None)
            self._events.append(Commit([self._messages[i].ref for i in sorted(self._deleted)]))
            return
        self._emit(replies.SIGNING_OFF)
        self._close("")

    def committed(self, failures: int) -> None:
        """The outcome of :class:`Commit`: how many messages could not be removed."""
        self._resume()
        self._emit(replies.SIGNING_OFF if failures == 0 else replies.NOT_REMOVED)
        self._close("")

    def _do_stls(self, line: str, args: list[str]) -> None:
        if not self.config.tls_available:
            self._client_error(replies.UNKNOWN)
        elif self.secure:
            self._client_error(replies.ALREADY_SECURE)
        else:
            self._emit(replies.START_TLS)
            self._buffer.clear()  # anything pipelined after STLS was sent in the clear
            self._wait_for(None)
            self._events.append(StartTls())

    def tls_started(self) -> None:
        """The TLS handshake succeeded: forget what was said in the clear."""
        self._resume()
        self.secure = True
        self._buffer.clear()
        self._user_name = None

    # -- authorization --------------------------------------------------------------------

    def _login_refusal(self) -> str | None:
        if self.config.tls_required and not self.secure:
            return replies.STLS_FIRST
        return None

    def _do_user(self, line: str, args: list[str]) -> None:
        name = line.split(None, 1)[1].strip() if args else ""
        refusal = self._login_refusal()
        if refusal:
            self._emit(refusal)
        elif "PLAIN" not in self.config.sasl.mechanisms():
            self._emit(replies.NO_USER_PASS)
        elif not name:
            self._client_error(replies.MISSING_USER)
        else:
            self._user_name = name
            self._emit(replies.user_ok(name))

    def _do_pass(self, line: str, args: list[str]) -> None:
        user, self._user_name = self._user_name, None
        mechanism = self.config.sasl.start("PLAIN")
        if user is None or mechanism is None:
            self._client_error(replies.USER_FIRST)
            return
        password = line[5:] if len(line) > 5 else ""  # the rest of the line, spaces and all
        self._apop = None
        response = b"\0" + user.encode("utf-8", "surrogateescape") + b"\0" + password.encode(
            "utf-8", "surrogateescape")
        outcome = mechanism.respond(response)
        assert isinstance(outcome, Outcome)
        self._login_done(outcome)

    def _do_apop(self, line: str, args: list[str]) -> None:
        refusal = self._login_refusal()
        if refusal:
            self._emit(refusal)
            return
        if self._apop is None or not self.config.sasl.apop_available():
            self._emit(replies.NO_APOP)
            return
        if len(args) < 2:
            self._client_error(replies.INVALID_ARGUMENTS)
            return
        challenge, self._apop = self._apop, None  # one attempt per greeting
        self._login_done(self.config.sasl.apop(challenge).respond(
            line.split(None, 1)[1].strip().encode("utf-8", "surrogateescape")))

    def _do_auth(self, line: str, args: list[str]) -> None:
        refusal = self._login_refusal()
        if not args:
            mechanisms = [] if refusal else self.config.sasl.mechanisms()
            self._emit(replies.OK, *mechanisms, ".")
            return
        if refusal:
            self._emit(refusal)
            return
        if not self._args(args, 1, 2):
            return
        mechanism = self.config.sasl.start(args[0])
        if mechanism is None:
            self._emit(replies.INVALID_MECHANISM)
            return
        self._apop = None
        if len(args) == 1:
            self._mechanism = mechanism
            self._challenge(mechanism.challenge())
        elif mechanism.server_first:
            self._emit(replies.INVALID_INITIAL_RESPONSE)
        else:
            self._mechanism = mechanism
            self._auth_data("" if args[1] == "=" else args[1])  # RFC 5034: "=" is empty

    def _challenge(self, data: bytes) -> None:
        self._emit("+ " + base64.b64encode(data).decode("ascii"))

    def _auth_response(self, line: str) -> None:
        self._events.append(Trace("[authentication response not logged]"))
        if line.strip() == "*":
            self._mechanism = None
            self._emit(replies.AUTH_CANCELLED)
            return
        self._auth_data(line.strip())

    def _auth_data(self, text: str) -> None:
        mechanism = self._mechanism
        assert mechanism is not None
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self._mechanism = None
            self._client_error(replies.INVALID_BASE64)
            return
        result = mechanism.respond(data)
        if isinstance(result, bytes):
            self._challenge(result)
        else:
            self._mechanism = None
            self._login_done(result)

    def _login_done(self, outcome: Outcome) -> None:
        self._events.append(AuthResult(outcome))
        if outcome.ok:
            self._wait_for(outcome.user)
            self._events.append(OpenMaildrop(outcome.user))
            return
        self.auth_failures += 1
        if self.auth_failures >= self.config.max_auth_failures:
            self._emit(replies.TOO_MANY_FAILURES)
            self._close("too many failed logins")
        else:
            self._emit(replies.AUTH_FAILED)

    def maildrop_opened(self, messages: list[Listed]) -> None:
        """The maildrop of :class:`OpenMaildrop` is locked: these are its messages."""
        self.user = self._resume()
        self.state = State.TRANSACTION
        self._messages = list(messages)
        self._deleted = set()
        self._emit(replies.OK)

    def maildrop_refused(self, reply: str) -> None:
        """The maildrop cannot be had (locked, say): stay in AUTHORIZATION."""
        self._resume()
        self._emit(reply)

    # -- transaction ----------------------------------------------------------------------

    def _live(self) -> list[tuple[int, Listed]]:
        return [(i + 1, m) for i, m in enumerate(self._messages) if i not in self._deleted]

    def _number(self, text: str) -> int | None:
        """The zero-based index of a live message, or None (the error is sent)."""
        if not _NUMBER.fullmatch(text):
            self._client_error(replies.INVALID_NUMBER)
            return None
        number = int(text)
        if not 1 <= number <= len(self._messages):
            self._client_error(replies.NO_SUCH_MESSAGE)
            return None
        if number - 1 in self._deleted:
            self._client_error(replies.deleted_already(number))
            return None
        return number - 1

    def _do_stat(self, line: str, args: list[str]) -> None:
        if self._args(args, 0, 0):
            live = self._live()
            self._emit(f"+OK {len(live)} {sum(m.size for _, m in live)}")

    def _listing(self, args: list[str], field: Callable[[Listed], object]) -> None:
        if not self._args(args, 0, 1):
            return
        if args:
            index = self._number(args[0])
            if index is not None:
                self._emit(f"+OK {index + 1} {field(self._messages[index])}")
            return
        live = self._live()
        self._emit(replies.listing(len(live)), *(f"{n} {field(m)}" for n, m in live), ".")

    def _do_list(self, line: str, args: list[str]) -> None:
        self._listing(args, lambda m: m.size)

    def _do_uidl(self, line: str, args: list[str]) -> None:
        self._listing(args, lambda m: m.uidl)

    def _do_retr(self, line: str, args: list[str]) -> None:
        if self._args(args, 1, 1):
            self._retrieve(args[0], None)

    def _do_top(self, line: str, args: list[str]) -> None:
        if not self._args(args, 2, 2):
            return
        if not _NUMBER.fullmatch(args[1]):
            self._client_error(replies.INVALID_ARGUMENTS)
            return
        self._retrieve(args[0], int(args[1]))

    def _retrieve(self, number: str, body_lines: int | None) -> None:
        index = self._number(number)
        if index is not None:
            self._wait_for((index, body_lines))
            self._events.append(OpenMessage(self._messages[index].ref))

    def message_opened(self, ok: bool) -> None:
        """The answer to :class:`OpenMessage`: False if it is being forwarded or gone."""
        index, body_lines = self._resume()
        message = self._messages[index]
        if not ok:
            self._emit(replies.unavailable(index + 1))
            return
        self._emit(replies.octets(message.size) if body_lines is None else replies.OK)
        self._events.append(StreamMessage(message.ref, body_lines))

    def _do_dele(self, line: str, args: list[str]) -> None:
        if self._args(args, 1, 1):
            index = self._number(args[0])
            if index is not None:
                self._deleted.add(index)
                self._emit(replies.OK)

    def _do_rset(self, line: str, args: list[str]) -> None:
        if self._args(args, 0, 0):
            self._deleted.clear()
            self._emit(replies.OK)

    def _do_noop(self, line: str, args: list[str]) -> None:
        if self._args(args, 0, 0):
            self._emit(replies.OK)

    # -- waiting for the adapter ------------------------------------------------------------

    def _wait_for(self, pending: Any) -> None:
        self._waiting = True
        self._pending = pending

    def _resume(self) -> Any:
        assert self._waiting, "the protocol is not waiting for an answer"
        self._waiting = False
        pending, self._pending = self._pending, None
        return pending

    _HANDLERS: dict[str, Callable[[PopProtocol, str, list[str]], None]] = {
        "CAPA": _do_capa, "QUIT": _do_quit, "STLS": _do_stls, "USER": _do_user,
        "PASS": _do_pass, "APOP": _do_apop, "AUTH": _do_auth, "STAT": _do_stat,
        "LIST": _do_list, "UIDL": _do_uidl, "RETR": _do_retr, "TOP": _do_top,
        "DELE": _do_dele, "RSET": _do_rset, "NOOP": _do_noop,
    }
