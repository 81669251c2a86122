"""The envelope file format of E-MailRelay (``#2821.3`` to ``#2821.8``).

An envelope is a list of ``X-MailRelay-<Key>: <value>`` lines ending with CRLF, in a
fixed order, closed by ``X-MailRelay-End: 1``.  Anything after the end line (such as
the failure reason of a ``.bad`` envelope) is kept as extra lines.  Values may be
folded RFC 2822 style (continuation lines start with a space or tab).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from emailrelay.util import xtext

PREFIX = "X-MailRelay-"
FORMAT = "#2821.8"
KNOWN_FORMATS = ("#2821.3", "#2821.4", "#2821.5", "#2821.6", "#2821.7", "#2821.8")
BODY_TYPES = ("7bit", "8bit", "binarymime", "unknown")
RETRY_COUNT = "RetryCount"  # extension: temporary failures so far
RETRY_AFTER = "RetryAfter"  # extension: epoch seconds of the next attempt

# The keys each format has between Client and End, in order.
_TAIL_KEYS: dict[str, tuple[str, ...]] = {
    "#2821.8": ("ClientCertificate", "MailFromAuthIn", "MailFromAuthOut", "ForwardTo",
                "ForwardToAddress", "ClientAccountSelector", "Utf8MailboxNames"),
    "#2821.7": ("ClientCertificate", "MailFromAuthIn", "MailFromAuthOut", "ForwardTo",
                "ForwardToAddress", "Utf8MailboxNames"),
    "#2821.6": ("ClientCertificate", "MailFromAuthIn", "MailFromAuthOut", "ForwardTo",
                "ForwardToAddress"),
    "#2821.5": ("ClientCertificate", "MailFromAuthIn", "MailFromAuthOut"),
    "#2821.4": ("ClientName", "ClientCertificate"),
    "#2821.3": (),
}


class EnvelopeError(ValueError):
    """An envelope file that cannot be understood."""


@dataclass
class Envelope:
    from_: str = ""
    to_local: list[str] = field(default_factory=list)
    to_remote: list[str] = field(default_factory=list)
    body_type: str = "7bit"  # one of BODY_TYPES
    authentication: str = ""  # the authenticated user name, decoded
    client: str = ""  # the client's transport address, "ip:port"
    client_certificate: str = ""  # PEM, unfolded
    mail_from_auth_in: str = ""  # xtext, "" or "+" for <>
    mail_from_auth_out: str = ""  # xtext
    forward_to: str = ""
    forward_to_address: str = ""
    client_account_selector: str = ""
    utf8_mailbox_names: bool = False
    format: str = FORMAT
    extra: list[str] = field(default_factory=list)  # lines after the end line

    @property
    def recipients(self) -> list[str]:
        return self.to_local + self.to_remote

    def to_bytes(self) -> bytes:
        """Serialise in the current format, exactly as E-MailRelay 2.6 writes it."""
        lines = [
            ("Format", FORMAT),
            ("Content", self.body_type),
            ("From", self.from_),
            ("ToCount", str(len(self.to_local) + len(self.to_remote))),
            *(("To-Local", to) for to in self.to_local),
            *(("To-Remote", to) for to in self.to_remote),
            ("Authentication", xtext.encode(self.authentication)),
            ("Client", self.client),
            ("ClientCertificate", self.client_certificate.strip().replace("\r", "")),
            ("MailFromAuthIn", _xnormalise(self.mail_from_auth_in)),
            ("MailFromAuthOut", _xnormalise(self.mail_from_auth_out)),
            ("ForwardTo", _xnormalise(self.forward_to)),
            ("ForwardToAddress", self.forward_to_address),
            ("ClientAccountSelector", self.client_account_selector),
            ("Utf8MailboxNames", "1" if self.utf8_mailbox_names else "0"),
            ("End", "1"),
        ]
        text = "".join(f"{PREFIX}{key}: {_refold(value)}\r\n" for key, value in lines)
        text += "".join(line + "\r\n" for line in self.extra)
        return text.encode("utf-8", "surrogateescape")

    def extra_value(self, key: str) -> str | None:
        """The last ``X-MailRelay-<key>`` value among the extra lines, if any."""
        found = None
        for line in self.extra:
            k, sep, v = line.partition(":")
            if sep and k == PREFIX + key:
                found = v.strip()
        return found

    def set_extra_value(self, key: str, value: str | None) -> None:
        """Replace every ``X-MailRelay-<key>`` extra line with one (or none if None)."""
        name = PREFIX + key
        self.extra = [line for line in self.extra if line.partition(":")[0] != name]
        if value is not None:
            self.extra.append(f"{name}: {value}")

    # Retry state of the forwarding agent, kept after the end line where E-MailRelay
    # (which stops reading at the end line) ignores it.

    @property
    def retry_count(self) -> int:
        value = self.extra_value(RETRY_COUNT)
        return int(value) if value and value.isdigit() else 0

    @property
    def retry_after(self) -> float:
        """Epoch seconds before which the message should not be tried again (0: now)."""
        value = self.extra_value(RETRY_AFTER)
        return float(value) if value and value.isdigit() else 0.0

    def set_retry(self, count: int, after: float) -> None:
        self.set_extra_value(RETRY_COUNT, str(count) if count else None)
        # Rounded up: a retry may come late by a fraction of a second, never early.
        self.set_extra_value(RETRY_AFTER, str(math.ceil(after)) if count else None)


def _refold(value: str) -> str:
    """A value read from folded lines holds newlines: fold it again, or it would break the
    line structure of the file written."""
    return value.replace("\n", "\r\n ")


def _xnormalise(text: str) -> str:
    return text if text in ("", "+") else xtext.encode(xtext.decode(text))


def _logical_lines(text: str) -> list[str]:
    """Split into lines, joining folded continuation lines with a newline."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if line[:1] in (" ", "\t") and out:
            out[-1] += "\n" + line[1:]
        else:
            out.append(line)
    if out and out[-1] == "":
        out.pop()
    return out


def parse(data: bytes) -> Envelope:
    """Parse envelope bytes; raise :class:`EnvelopeError` saying what is wrong."""
    text = data.decode("utf-8", "surrogateescape")
    lines = _logical_lines(text)
    pos = 0

    def take(key: str) -> str:
        nonlocal pos
        if pos >= len(lines):
            raise EnvelopeError(f"truncated: expected \"{PREFIX}{key}:\"")
        line = lines[pos]
        name, sep, value = line.partition(":")
        if not sep or name != PREFIX + key:
            raise EnvelopeError(f"expected \"{PREFIX}{key}:\" at line {pos + 1}")
        pos += 1
        return value.strip(" \t")

    env = Envelope()
    env.format = take("Format")
    if env.format not in KNOWN_FORMATS:
        raise EnvelopeError(f"unknown format id \"{env.format}\"")
    body = take("Content")
    env.body_type = body if body in BODY_TYPES else "unknown"
    env.from_ = take("From")
    try:
        count = int(take("ToCount"))
    except ValueError:
        raise EnvelopeError("bad ToCount value") from None
    if count < 0 or count > len(lines):
        raise EnvelopeError("bad ToCount value")
    for _ in range(count):
        if pos < len(lines) and lines[pos].startswith(PREFIX + "To-Local:"):
            env.to_local.append(take("To-Local"))
        elif pos < len(lines) and lines[pos].startswith(PREFIX + "To-Remote:"):
            env.to_remote.append(take("To-Remote"))
        else:
            raise EnvelopeError(f"bad 'to' line at line {pos + 1}")
    env.authentication = xtext.decode(take("Authentication"))
    env.client = take("Client")
    for key in _TAIL_KEYS[env.format]:
        value = take(key)
        if key == "ClientCertificate":
            env.client_certificate = value
        elif key in ("MailFromAuthIn", "MailFromAuthOut"):
            if value not in ("", "+") and not xtext.valid(value):
                raise EnvelopeError(f"invalid xtext in {key}")
            setattr(env, "mail_from_auth_in" if key == "MailFromAuthIn"
                    else "mail_from_auth_out", value)
        elif key == "ForwardTo":
            env.forward_to = value
        elif key == "ForwardToAddress":
            env.forward_to_address = value
        elif key == "ClientAccountSelector":
            env.client_account_selector = value
        elif key == "Utf8MailboxNames":
            env.utf8_mailbox_names = value == "1"
    if pos >= len(lines) or not lines[pos].startswith(PREFIX + "End"):
        raise EnvelopeError("no end line")
    env.extra = [line.replace("\n", "\r\n ") for line in lines[pos + 1:]]
    return env
