"""The SMTP server's reply texts, as E-MailRelay 2.6 words them, in one place."""

from __future__ import annotations

from emailrelay.util.printable import printable

SOFTWARE = "E-MailRelay V2.6"


def greeting(domain: str, anonymous: bool) -> str:
    return "220 greeting" if anonymous else f"220 {domain} -- {SOFTWARE} -- Service ready"


DISABLED = "421 service not available"
SHUTTING_DOWN = "421 service shutting down"
TOO_MANY_ERRORS = "421 too many errors: closing connection"
IDLE_TIMEOUT = "421 idle timeout: closing connection"
HELO_OK = "250 hello"
PARAMETER_REQUIRED = "501 parameter required"
OUT_OF_SEQUENCE = "503 command out of sequence -- use RSET to resynchronise"
UNRECOGNISED = "500 command unrecognized"
NOT_IMPLEMENTED = "502 command not implemented"
LINE_TOO_LONG = "500 line too long"
INVALID_ARGUMENT = "501 invalid argument"
NOOP = "250 noop"
RESET = "250 state reset"
QUIT = "221 OK"
HELP = ("214-commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
        "214 end of help")
VRFY_DISABLED = "252 cannot vrfy"
VRFY_INVALID = "550 invalid mailbox"
START_DATA = "354 start mail input -- end with <CRLF>.<CRLF>"
NO_RECIPIENTS = "554 no valid recipients"
DATA_WITH_BINARYMIME = "503 invalid data command with binarymime -- use RSET to resynchronise"
MESSAGE_PROCESSED = "250 message processed"
TRANSACTION_FAILED = "554 transaction failed"
STORAGE_FULL = "452 insufficient system storage"
SIZE_EXCEEDED = "552 message size exceeds fixed maximum message size"
TOO_MANY_RECIPIENTS = "452 too many recipients"
HEADER_LINE_TOO_LONG = "554 message header line too long"
NUL_IN_DATA = "554 message content contains NUL characters"
AUTH_REQUIRED = "530 authentication required"
AUTH_REQUIRED_STARTTLS = "530 authentication required: use starttls"
ENCRYPTION_REQUIRED = "530 encryption required"
ENCRYPTION_REQUIRED_STARTTLS = "530 encryption required: use starttls"
READY_FOR_TLS = "220 ready to start tls"
AUTH_OK = "235 authentication successful"
AUTH_FAILED = "535 authentication failed"
AUTH_CANCELLED = "501 authentication cancelled"
BAD_MECHANISM = "504 unsupported authentication mechanism"
AUTH_NEEDS_TLS_STARTTLS = "504 unsupported authentication mechanism: use starttls"
TOO_MANY_AUTH_FAILURES = "421 too many failed logins: closing connection"


def mail_ok(raw: str) -> str:
    return f"250 sender <{raw}> OK"


def mail_error(detail: str) -> str:
    return f"553 mailbox name not allowed: {detail}" if detail else "553 mailbox name not allowed"


def rcpt_ok(raw: str, local: bool = False) -> str:
    # E-MailRelay marks a local recipient with two spaces before "OK".
    return f"250 recipient <{raw}>{'  ' if local else ' '}OK"


def rcpt_error(detail: str, code: int = 550) -> str:
    return f"{code} {detail}"


def rcpt_rejected(raw: str, text: str, *, temporary: bool) -> str:
    """A verifier's rejection; the address is shown only when it is not plain ASCII."""
    shown = "" if raw.isascii() and raw.isprintable() else f" recipient <{raw}>"
    return f"{450 if temporary else 550}{shown} {' '.join(text.split()) or 'mailbox unavailable'}"


def vrfy_local(name: str) -> str:
    return f"250 {name}"


def vrfy_not_verified(text: str, *, temporary: bool) -> str:
    return f"{450 if temporary else 550} {' '.join(text.split()) or 'mailbox unavailable'}"


def bdat_chunk_ok(size: int) -> str:
    return f"250 {size} bytes received"


def vrfy_remote(address: str) -> str:
    # The client's own text: a bare CR or LF in it must not split the reply.
    return f"252 cannot verify but will accept: {printable(address)}"


def filter_failure(response: str, code: int | None) -> str:
    """A filter's rejection: its own 4xx/5xx code when it gave one, else 452."""
    text = " ".join(response.split()) or "rejected"
    return f"{code if code is not None and 400 <= code < 600 else 452} {text}"


def forwarding_failed(reason: str) -> str:
    """--immediate: the smarthost refused the message for good."""
    return f"554 forwarding failed: {' '.join(reason.split())}"[:500]


def ehlo(domain: str, anonymous: bool, extensions: list[str]) -> list[str]:
    first = "smtp says hello" if anonymous else f"{domain} says hello"
    lines = [first, *extensions]
    return [f"250{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines)]
