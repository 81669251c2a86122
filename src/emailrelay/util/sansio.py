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
