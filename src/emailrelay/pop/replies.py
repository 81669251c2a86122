"""The POP3 server's reply texts in one place.

Where E-MailRelay 2.6 has a text we use it (a plain ``+OK`` after a login, ``DELE``,
``TOP`` and ``RSET``); where it answers a bare ``-ERR`` we say what went wrong.
``[IN-USE]`` and ``[AUTH]`` are RFC 2449/3206 response codes (advertised as RESP-CODES
and AUTH-RESP-CODE), which tell a client not to blame the password when the maildrop is
busy.
"""

from __future__ import annotations

from emailrelay.util.printable import printable

GREETING = "+OK POP3 server ready"
CAPABILITIES = "+OK capability list follows"
SIGNING_OFF = "+OK signing off"
OK = "+OK"
UNKNOWN = "-ERR unknown command"
NOT_LOGGED_IN = "-ERR log in first"
ALREADY_LOGGED_IN = "-ERR already logged in"
LINE_TOO_LONG = "-ERR line too long"
TOO_MANY_ERRORS = "-ERR too many errors: closing connection"
INVALID_ARGUMENTS = "-ERR invalid arguments"
MISSING_USER = "-ERR missing user name"
USER_FIRST = "-ERR send USER first"
NO_USER_PASS = "-ERR no SASL PLAIN mechanism to do USER/PASS authentication"
NO_APOP = "-ERR APOP is not available"
STLS_FIRST = "-ERR must use STLS before authentication"
ALREADY_SECURE = "-ERR TLS is already active"
START_TLS = "+OK begin TLS negotiation"
INVALID_MECHANISM = "-ERR invalid mechanism"
INVALID_INITIAL_RESPONSE = "-ERR invalid initial response"
INVALID_BASE64 = "-ERR invalid base64 encoding"
AUTH_CANCELLED = "-ERR authentication cancelled"
AUTH_FAILED = "-ERR [AUTH] authentication failed"
TOO_MANY_FAILURES = "-ERR [AUTH] authentication failed: closing connection"
MAILDROP_LOCKED = "-ERR [IN-USE] maildrop locked"
MAILDROP_UNAVAILABLE = "-ERR [SYS/TEMP] cannot open the maildrop"
MAILBOX_NAME = "-ERR [AUTH] this user name cannot have a maildrop"
INVALID_NUMBER = "-ERR invalid message number"
NO_SUCH_MESSAGE = "-ERR no such message"
NOT_REMOVED = "-ERR some deleted messages not removed"


def greeting(apop_challenge: str | None) -> str:
    return f"{GREETING} {apop_challenge}" if apop_challenge else GREETING


def user_ok(name: str) -> str:
    # The client's own text: a bare CR or LF in it must not split the reply.
    return f"+OK user: {printable(name)}"


def listing(count: int) -> str:
    """The first line of LIST and UIDL, word for word E-MailRelay's."""
    return f"+OK {count} message(s)"


def deleted_already(number: int) -> str:
    return f"-ERR message {number} already deleted"


def octets(size: int) -> str:
    return f"+OK {size} octets"


def unavailable(number: int) -> str:
    return f"-ERR message {number} is not available: it is being forwarded or has gone"
