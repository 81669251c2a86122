"""What the sans-I/O protocol cores (SMTP server and client, POP3) have in common.

A core is fed received bytes and pulled for events until it returns :data:`NEED_DATA`
(read more) or :data:`PAUSED` (its adapter owes it a decision); :class:`Send` carries
lines to write and :class:`Trace` a line for the ``--verbose`` protocol log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto


class Marker(Enum):
    NEED_DATA = auto()
    PAUSED = auto()


NEED_DATA = Marker.NEED_DATA
PAUSED = Marker.PAUSED


@dataclass
class Send:
    """Lines to write, each without its CRLF, in one go."""

    lines: list[str]
    sensitive: bool = False  # do not log the text (AUTH responses)

    def to_bytes(self) -> bytes:
        # surrogateescape: bytes a peer sent that are echoed back go out unchanged.
        return "".join(line + "\r\n" for line in self.lines).encode("utf-8", "surrogateescape")


@dataclass
class Trace:
    """A received line for the protocol log (passwords and SASL data left out)."""

    text: str


class ServerCore:
    """The input side shared by the SMTP and POP3 server cores.

    Received bytes collect in ``_buffer``; :meth:`next_event` hands out queued events,
    and otherwise asks the subclass to :meth:`_step` through the buffer.  A subclass
    sets ``_waiting`` while its adapter owes it a decision.
    """

    ERROR_LIMIT = 20  # protocol errors from the client before the connection is closed
    TOO_MANY_ERRORS = ""  # the reply then

    def __init__(self) -> None:
        self.errors = 0
        self._buffer = bytearray()
        self._events: list[object] = []
        self._waiting = False  # an adapter decision is pending
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` means the connection has ended."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> object:
        while True:
            if self._events:
                return self._events.pop(0)
            if self._waiting:
                return PAUSED
            if self._closed():
                return NEED_DATA
            if not self._step():
                if not self._eof:
                    return NEED_DATA
                self._ended()

    def _emit(self, *lines: str) -> None:
        self._events.append(Send(list(lines)))

    def _client_error(self, reply: str) -> None:
        """Answer a bad command; too many of them close the connection."""
        self.errors += 1
        self._note_refusal(reply)
        if self.errors >= self.ERROR_LIMIT:
            self._emit(self.TOO_MANY_ERRORS)
            self._close("too many protocol errors from the client")
        else:
            self._emit(reply)

    def _note_refusal(self, reply: str) -> None:
        """A hook: a command was refused with ``reply`` (for the log)."""

    def _closed(self) -> bool:
        raise NotImplementedError

    def _close(self, reason: str) -> None:
        raise NotImplementedError

    def _step(self) -> bool:
        """Handle what the buffer holds next; False when more input is needed."""
        raise NotImplementedError

    def _ended(self) -> None:
        """The client has gone and the buffer holds nothing more to handle."""
        raise NotImplementedError
