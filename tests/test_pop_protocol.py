"""The sans-I/O POP3 core: states, every command, logins, hostile input, properties."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emailrelay.auth.sasl import SaslServer
from emailrelay.auth.secrets import parse_secrets
from emailrelay.pop import protocol as proto
from emailrelay.pop import replies
from emailrelay.pop.content import ContentEncoder, octet_count
from emailrelay.pop.protocol import Listed, PopConfig, PopProtocol, State

SECRETS_TEXT = ("server plain alice secret\n"
                "server md5 carol x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=\n")
APOP_CHALLENGE = "<1896.697170952@pop.example.com>"
MESSAGES = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n.dot\r\nline 2\r\nline 3\r\n",
            b"Subject: three\r\n\r\nthird\r\n"]


def config(secrets: str = SECRETS_TEXT, **kw: object) -> PopConfig:
    parsed = parse_secrets(secrets, "test")[0]
    kw.setdefault("apop_challenge", APOP_CHALLENGE)
    return PopConfig(sasl=SaslServer(lambda: parsed, "pop.example.com"), **kw)  # type: ignore[arg-type]


@dataclass
class Driver:
    """Answers the core's requests like the asyncio adapter, recording everything."""

    protocol: PopProtocol
    messages: list[bytes] = field(default_factory=lambda: list(MESSAGES))
    sent: list[str] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    outcomes: list[proto.Outcome] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    committed: list[list[bytes]] = field(default_factory=list)
    closed: str | None = None
    refuse_maildrop: str | None = None
    unavailable: bool = False
    commit_failures: int = 0
    tls_requests: int = 0
    output: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.output += self.protocol.greeting().to_bytes()
        self.sent.extend(self.protocol.greeting().lines)

    def feed(self, data: bytes) -> list[str]:
        before = len(self.sent)
        self.protocol.receive_data(data)
        self.drain()
        return self.sent[before:]

    def say(self, line: str) -> list[str]:
        return self.feed(line.encode() + b"\r\n")

    def drain(self) -> None:
        p = self.protocol
        while True:
            ev = p.next_event()
            if ev is proto.NEED_DATA:
                return
            assert ev is not proto.PAUSED, "the driver answers every request"
            if isinstance(ev, proto.Send):
                self.sent.extend(ev.lines)
                self.output += ev.to_bytes()
            elif isinstance(ev, proto.Trace):
                self.traces.append(ev.text)
            elif isinstance(ev, proto.AuthResult):
                self.outcomes.append(ev.outcome)
            elif isinstance(ev, proto.OpenMaildrop):
                self.opened.append(ev.user)
                if self.refuse_maildrop:
                    p.maildrop_refused(self.refuse_maildrop)
                else:
                    p.maildrop_opened([Listed(octet_count([m]), f"uid{i}", m)
                                       for i, m in enumerate(self.messages, 1)])
            elif isinstance(ev, proto.OpenMessage):
                p.message_opened(not self.unavailable)
            elif isinstance(ev, proto.StreamMessage):
                encoder = ContentEncoder(ev.body_lines)
                data = encoder.feed(ev.ref) + encoder.finish()
                self.output += data
                self.sent.extend(data.decode().split("\r\n")[:-1])
            elif isinstance(ev, proto.Commit):
                self.committed.append(ev.refs)
                p.committed(self.commit_failures)
            elif isinstance(ev, proto.StartTls):
                self.tls_requests += 1
                p.tls_started()
            elif isinstance(ev, proto.Close):
                self.closed = ev.reason


DRIVER_FIELDS = ("refuse_maildrop", "unavailable", "commit_failures")


def driver(**kw: object) -> Driver:
    """A driver; keywords are Driver fields or PopConfig fields."""
    mine = {k: kw.pop(k) for k in DRIVER_FIELDS if k in kw}
    return Driver(PopProtocol(config(**kw)), **mine)  # type: ignore[arg-type]


def logged_in(user: str = "alice", password: str = "secret", **kw: object) -> Driver:
    d = driver(**kw)
    d.say(f"USER {user}")
    assert d.say(f"PASS {password}") == ["+OK"]
    return d


# -- greeting and capabilities ----------------------------------------------------------------

def test_greeting_carries_the_apop_timestamp_only_when_apop_is_possible() -> None:
    assert driver().sent == [f"+OK POP3 server ready {APOP_CHALLENGE}"]
    assert driver(apop_challenge=None).sent == ["+OK POP3 server ready"]


def test_capabilities_before_and_after_login() -> None:
    d = driver()
    assert d.say("CAPA") == [
        "+OK capability list follows", "USER", "CAPA", "TOP", "UIDL", "PIPELINING",
        "RESP-CODES", "AUTH-RESP-CODE",
        "SASL CRAM-SHA512 CRAM-SHA256 CRAM-SHA1 CRAM-MD5 PLAIN LOGIN", "."]
    d.say("USER alice")
    d.say("PASS secret")
    assert d.say("capa") == ["+OK capability list follows", "CAPA", "TOP", "UIDL",
                             "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "."]


def test_capabilities_with_tls() -> None:
    assert "STLS" in driver(tls_available=True).say("CAPA")
    required = driver(tls_available=True, tls_required=True).say("CAPA")
    assert "STLS" in required and "USER" not in required
    assert not any(line.startswith("SASL") for line in required)


def test_no_user_capability_without_server_accounts() -> None:
    d = driver(secrets="client plain a b\n", apop_challenge=None)
    capa = d.say("CAPA")
    assert "USER" not in capa and not any(line.startswith("SASL") for line in capa)
    assert d.say("USER a") == [replies.NO_USER_PASS]
    assert d.say("AUTH") == ["+OK", "."]


# -- USER / PASS ------------------------------------------------------------------------------

def test_user_pass_login_opens_the_maildrop() -> None:
    d = driver()
    assert d.say("USER alice") == ["+OK user: alice"]
    assert d.say("PASS secret") == ["+OK"]
    assert d.opened == ["alice"] and d.protocol.state is State.TRANSACTION
    assert d.protocol.user == "alice"
    assert d.outcomes == [proto.Outcome(True, "alice", "PLAIN")]


def test_pass_keeps_spaces_in_the_password() -> None:
    d = driver(secrets="server plain bob my+20pass+20\n")
    d.say("USER bob")
    assert d.say("PASS my pass ") == ["+OK"]


def test_user_pass_with_an_md5_secret() -> None:
    d = driver()
    d.say("USER carol")
    assert d.say("PASS my password") == ["+OK"]


def test_wrong_password_then_right_one() -> None:
    d = driver()
    d.say("USER alice")
    assert d.say("PASS wrong") == [replies.AUTH_FAILED]
    assert d.outcomes[-1] == proto.Outcome(False, "alice", "PLAIN", "wrong password")
    assert d.protocol.state is State.AUTHORIZATION and d.opened == []
    d.say("USER alice")
    assert d.say("PASS secret") == ["+OK"]


def test_three_failed_logins_close_the_connection() -> None:
    d = driver()
    for _ in range(2):
        d.say("USER alice")
        assert d.say("PASS bad") == [replies.AUTH_FAILED]
    d.say("USER nobody")
    assert d.say("PASS bad") == [replies.TOO_MANY_FAILURES]
    assert d.closed == "too many failed logins"
    assert d.outcomes[-1].reason == "no such account"


@pytest.mark.parametrize(("lines", "reply"), [
    (["PASS secret"], replies.USER_FIRST),
    (["USER"], replies.MISSING_USER),
    (["USER alice", "PASS secret", "USER alice"], replies.ALREADY_LOGGED_IN),
    (["USER alice", "PASS x", "PASS secret"], replies.USER_FIRST),  # USER is used up
])
def test_user_pass_out_of_order(lines: list[str], reply: str) -> None:
    d = driver()
    for line in lines[:-1]:
        d.say(line)
    assert d.say(lines[-1]) == [reply]


# -- APOP -----------------------------------------------------------------------------------

def apop_digest(password: bytes, challenge: str = APOP_CHALLENGE) -> str:
    return hashlib.md5(challenge.encode() + password).hexdigest()


def test_apop_login() -> None:
    d = driver()
    assert d.say(f"APOP alice {apop_digest(b'secret')}") == ["+OK"]
    assert d.outcomes == [proto.Outcome(True, "alice", "APOP")]


def test_apop_with_a_digest_that_is_not_ascii_is_a_failed_login() -> None:
    d = driver()  # found by fuzzing: it was a traceback that dropped the connection
    assert d.say("APOP alice caf\u00e9") == [replies.AUTH_FAILED]
    assert d.outcomes == [proto.Outcome(False, "alice", "APOP", "wrong password")]


def test_apop_gets_one_attempt_per_greeting() -> None:
    d = driver()
    assert d.say(f"APOP alice {apop_digest(b'wrong')}") == [replies.AUTH_FAILED]
    assert d.say(f"APOP alice {apop_digest(b'secret')}") == [replies.NO_APOP]


def test_apop_is_unavailable_without_a_timestamp_or_plain_secrets() -> None:
    assert driver(apop_challenge=None).say("APOP alice x") == [replies.NO_APOP]
    md5_only = "server md5 carol x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=\n"
    assert driver(secrets=md5_only).say(f"APOP carol {apop_digest(b'my password')}") == [
        replies.NO_APOP]
    assert driver().say("APOP alice") == [replies.INVALID_ARGUMENTS]


# -- AUTH (SASL) ------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_auth_without_a_mechanism_lists_them() -> None:
    assert driver().say("AUTH") == ["+OK", "CRAM-SHA512", "CRAM-SHA256", "CRAM-SHA1",
                                    "CRAM-MD5", "PLAIN", "LOGIN", "."]


def test_auth_plain_with_an_initial_response() -> None:
    d = driver()
    assert d.say("AUTH PLAIN " + b64(b"\0alice\0secret")) == ["+OK"]
    assert "AUTH PLAIN" in d.traces and not any("AGFsaWNl" in t for t in d.traces)


def test_auth_plain_with_a_continuation_line() -> None:
    d = driver()
    assert d.say("AUTH PLAIN") == ["+ "]
    assert d.say(b64(b"\0alice\0secret")) == ["+OK"]
    assert "[authentication response not logged]" in d.traces


def test_auth_plain_empty_initial_response() -> None:
    d = driver()
    assert d.say("AUTH PLAIN =") == [replies.AUTH_FAILED]
    assert d.outcomes[-1].reason == "malformed PLAIN response"


def test_auth_login_exchange() -> None:
    d = driver()
    assert d.say("AUTH LOGIN") == ["+ VXNlcm5hbWU6"]
    assert d.say(b64(b"carol")) == ["+ UGFzc3dvcmQ6"]
    assert d.say(b64(b"my password")) == ["+OK"]


def test_auth_cram_md5_exchange_with_an_md5_secret() -> None:
    d = driver()
    (challenge_line,) = d.say("AUTH CRAM-MD5")
    challenge = base64.b64decode(challenge_line[2:])
    assert challenge.startswith(b"<") and challenge.endswith(b"@pop.example.com>")
    digest = hmac.new(b"my password", challenge, "md5").hexdigest()
    assert d.say(b64(f"carol {digest}".encode())) == ["+OK"]


@pytest.mark.parametrize(("lines", "reply"), [
    (["AUTH XOAUTH2"], replies.INVALID_MECHANISM),
    (["AUTH CRAM-MD5 " + b64(b"x y")], replies.INVALID_INITIAL_RESPONSE),
    (["AUTH PLAIN", "*"], replies.AUTH_CANCELLED),
    (["AUTH PLAIN", "not base64!"], replies.INVALID_BASE64),
    (["AUTH PLAIN a b c"], replies.INVALID_ARGUMENTS),
    (["AUTH PLAIN " + b64(b"\0alice\0wrong")], replies.AUTH_FAILED),
])
def test_auth_errors(lines: list[str], reply: str) -> None:
    d = driver()
    for line in lines[:-1]:
        d.say(line)
    assert d.say(lines[-1]) == [reply]
    assert d.protocol.state is State.AUTHORIZATION
    assert d.say("STAT") == [replies.NOT_LOGGED_IN]  # a command again, not SASL data


def test_refused_maildrop_keeps_the_session_in_authorization() -> None:
    d = driver(refuse_maildrop=replies.MAILDROP_LOCKED)
    d.say("USER alice")
    assert d.say("PASS secret") == ["-ERR [IN-USE] maildrop locked"]
    assert d.protocol.state is State.AUTHORIZATION and d.protocol.user is None
    d.refuse_maildrop = None
    d.say("USER alice")
    assert d.say("PASS secret") == ["+OK"]


# -- states -----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP",
                                     "RSET", "TOP 1 0", "UIDL", "UIDL 1"])
def test_transaction_commands_before_login(command: str) -> None:
    d = driver()
    assert d.say(command) == [replies.NOT_LOGGED_IN]


@pytest.mark.parametrize("command", ["USER alice", "PASS secret", "APOP alice x", "AUTH PLAIN"])
def test_login_commands_after_login(command: str) -> None:
    assert logged_in().say(command) == [replies.ALREADY_LOGGED_IN]


@pytest.mark.parametrize("line", ["", "HELO", "XYZZY 1", "LIST\0", "RETR\x001"])
def test_unknown_commands(line: str) -> None:
    assert driver().say(line) == [replies.UNKNOWN]


def test_quit_before_login_deletes_nothing() -> None:
    d = driver()
    assert d.say("QUIT") == [replies.SIGNING_OFF]
    assert d.closed == "" and d.committed == []


# -- transaction ------------------------------------------------------------------------------

def test_stat_list_and_uidl() -> None:
    d = logged_in()
    assert d.say("STAT") == ["+OK 3 86"]
    assert d.say("LIST") == ["+OK 3 message(s)", "1 23", "2 38",
                             "3 25", "."]
    assert d.say("LIST 2") == ["+OK 2 38"]
    assert d.say("UIDL") == ["+OK 3 message(s)", "1 uid1", "2 uid2",
                             "3 uid3", "."]
    assert d.say("UIDL 3") == ["+OK 3 uid3"]


def test_deleted_messages_keep_their_numbers_until_rset() -> None:
    d = logged_in()
    assert d.say("DELE 2") == ["+OK"]
    assert d.say("STAT") == ["+OK 2 48"]
    assert d.say("LIST") == ["+OK 2 message(s)", "1 23", "3 25", "."]
    assert d.say("UIDL 2") == ["-ERR message 2 already deleted"]
    assert d.say("RETR 2") == ["-ERR message 2 already deleted"]
    assert d.say("DELE 2") == ["-ERR message 2 already deleted"]
    assert d.say("RSET") == ["+OK"]
    assert d.say("STAT") == ["+OK 3 86"]  # the count and the size are back
    assert d.say("LIST 2") == ["+OK 2 38"]


@pytest.mark.parametrize(("command", "reply"), [
    ("LIST 0", replies.NO_SUCH_MESSAGE), ("LIST 4", replies.NO_SUCH_MESSAGE),
    ("RETR 999999999", replies.NO_SUCH_MESSAGE), ("DELE 4", replies.NO_SUCH_MESSAGE),
    ("LIST -1", replies.INVALID_NUMBER), ("RETR 1x", replies.INVALID_NUMBER),
    ("UIDL abc", replies.INVALID_NUMBER), ("RETR 1234567890", replies.INVALID_NUMBER),
    ("TOP x 1", replies.INVALID_NUMBER), ("RETR +1", replies.INVALID_NUMBER),
    ("RETR", replies.INVALID_ARGUMENTS), ("RETR 1 2", replies.INVALID_ARGUMENTS),
    ("TOP 1", replies.INVALID_ARGUMENTS), ("TOP 1 -1", replies.INVALID_ARGUMENTS),
    ("TOP 1 x", replies.INVALID_ARGUMENTS), ("STAT 1", replies.INVALID_ARGUMENTS),
    ("LIST 1 2", replies.INVALID_ARGUMENTS), ("NOOP x", replies.INVALID_ARGUMENTS),
    ("DELE", replies.INVALID_ARGUMENTS),
])
def test_bad_message_numbers_and_arguments(command: str, reply: str) -> None:
    d = logged_in()
    assert d.say(command) == [reply]
    assert d.say("NOOP") == ["+OK"]


def test_retr_sends_the_octet_count_and_byte_stuffed_content() -> None:
    d = logged_in()
    lines = d.say("RETR 2")
    assert lines == ["+OK 38 octets", "Subject: two", "", "..dot", "line 2", "line 3", "."]
    assert d.output.endswith(b"+OK 38 octets\r\nSubject: two\r\n\r\n..dot\r\nline 2\r\n"
                             b"line 3\r\n.\r\n")


def test_top_sends_the_header_and_some_body_lines() -> None:
    d = logged_in()
    assert d.say("TOP 2 0") == ["+OK", "Subject: two", "", "."]
    assert d.say("TOP 2 2") == ["+OK", "Subject: two", "", "..dot", "line 2", "."]
    assert d.say("TOP 2 99") == ["+OK", "Subject: two", "", "..dot", "line 2",
                                 "line 3", "."]


def test_a_message_being_forwarded_is_not_sent() -> None:
    d = logged_in(unavailable=True)
    assert d.say("RETR 1") == [replies.unavailable(1)]
    assert d.say("TOP 1 0") == [replies.unavailable(1)]
    assert d.say("NOOP") == ["+OK"]


def test_quit_commits_the_deletions() -> None:
    d = logged_in()
    d.say("DELE 3")
    d.say("DELE 1")
    assert d.say("QUIT") == [replies.SIGNING_OFF]
    assert d.committed == [[MESSAGES[0], MESSAGES[2]]] and d.closed == ""


def test_quit_reports_deletions_that_failed() -> None:
    d = logged_in(commit_failures=1)
    d.say("DELE 1")
    assert d.say("QUIT") == [replies.NOT_REMOVED]
    assert d.closed == ""


def test_quit_after_rset_deletes_nothing() -> None:
    d = logged_in()
    d.say("DELE 1")
    d.say("RSET")
    assert d.say("QUIT") == [replies.SIGNING_OFF]
    assert d.committed == []


def test_a_dropped_connection_deletes_nothing() -> None:
    d = logged_in()
    d.say("DELE 1")
    d.say("DELE 2")
    assert d.feed(b"") == []
    assert d.closed == "disconnected before QUIT" and d.committed == []


def test_a_dropped_connection_mid_command_deletes_nothing() -> None:
    d = logged_in()
    d.say("DELE 1")
    d.feed(b"QUI")
    d.feed(b"")
    assert d.closed == "disconnected before QUIT" and d.committed == []


def test_empty_maildrop() -> None:
    d = driver()
    d.messages = []
    d.say("USER alice")
    assert d.say("PASS secret") == ["+OK"]
    assert d.say("LIST") == ["+OK 0 message(s)", "."]
    assert d.say("RETR 1") == [replies.NO_SUCH_MESSAGE]


# -- input handling ---------------------------------------------------------------------------

def test_pipelined_commands_are_answered_in_order() -> None:
    d = driver()
    replies_ = d.feed(b"USER alice\r\nPASS secret\r\nSTAT\r\nDELE 1\r\nQUIT\r\n")
    assert replies_ == ["+OK user: alice", "+OK", "+OK 3 86", "+OK", replies.SIGNING_OFF]
    assert d.committed == [[MESSAGES[0]]]


def test_commands_split_across_reads_and_bare_lf() -> None:
    d = driver()
    for byte in b"USER alice\nPASS secret\r\nST":
        d.feed(bytes([byte]))
    assert d.feed(b"AT\n") == ["+OK 3 86"]


def test_over_long_lines_are_refused_and_the_session_goes_on() -> None:
    d = driver()
    assert d.feed(b"USER " + b"x" * 600 + b"\r\n") == [replies.LINE_TOO_LONG]
    d.feed(b"USER " + b"y" * 40000)  # no line end yet: swallowed, not stored
    assert len(d.protocol._buffer) <= proto.COMMAND_LINE_LIMIT + 1
    assert d.feed(b"yyy\r\nUSER alice\r\n") == [replies.LINE_TOO_LONG, "+OK user: alice"]


def test_too_many_errors_close_the_connection() -> None:
    d = driver()
    for _ in range(proto.PopProtocol.ERROR_LIMIT - 1):
        assert d.say("BOGUS") == [replies.UNKNOWN]
    assert d.say("BOGUS") == [replies.TOO_MANY_ERRORS]
    assert d.closed == "too many protocol errors from the client"
    assert d.say("CAPA") == []


def test_passwords_never_reach_the_trace() -> None:
    d = driver()
    d.feed(b"USER alice\r\nPASS secret\r\n")
    assert d.traces == ["USER alice", "PASS [password not logged]"]


# -- STLS slot --------------------------------------------------------------------------------

def test_stls_without_tls_is_an_unknown_command() -> None:
    assert driver().say("STLS") == [replies.UNKNOWN]


def test_stls_upgrades_and_discards_pipelined_plaintext() -> None:
    d = driver(tls_available=True)
    assert d.feed(b"STLS\r\nUSER injected\r\n") == [replies.START_TLS]
    assert d.tls_requests == 1 and d.protocol.secure
    assert d.say("PASS x") == [replies.USER_FIRST]  # the injected USER was dropped
    assert d.say("STLS") == [replies.ALREADY_SECURE]
    assert "STLS" not in d.say("CAPA")


def test_tls_required_refuses_logins_until_stls() -> None:
    d = driver(tls_available=True, tls_required=True)
    assert d.say("USER alice") == [replies.STLS_FIRST]
    assert d.say("AUTH PLAIN") == [replies.STLS_FIRST]
    assert d.say(f"APOP alice {apop_digest(b'secret')}") == [replies.STLS_FIRST]
    assert d.say("AUTH") == ["+OK", "."]
    d.say("STLS")
    d.say("USER alice")
    assert d.say("PASS secret") == ["+OK"]


# -- properties -------------------------------------------------------------------------------

def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=8))
def test_any_bytes_in_any_chunks_give_well_formed_replies(data: bytes, cuts: list[int]) -> None:
    whole, pieces = driver(), driver()
    whole.feed(data)
    for piece in split(data, cuts):
        pieces.feed(piece)
    assert whole.sent == pieces.sent  # how the input is chunked does not matter
    assert whole.output == pieces.output
    for line in whole.output.split(b"\r\n")[:-1]:
        assert b"\n" not in line and b"\r" not in line
    assert whole.committed == []  # never an UPDATE without QUIT after a login


commands = st.sampled_from(
    ["STAT", "LIST", "UIDL", "NOOP", "RSET", "CAPA", "LIST 2", "UIDL 1", "RETR 1", "RETR 3",
     "TOP 2 1", "DELE 1", "DELE 2", "DELE 3", "DELE 4", "DELE x", "RETR 0", "USER bob",
     "BOGUS", "AUTH PLAIN", "*", "TOP 1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=25), st.booleans())
def test_deletions_happen_exactly_as_the_client_asked(script: list[str], quit_: bool) -> None:
    d = logged_in()
    marked: set[int] = set()
    for line in script:
        answer = d.say(line)
        if d.closed is not None:
            break
        if line.startswith("DELE ") and answer[0].startswith("+OK"):
            marked.add(int(line.split()[1]))
        if line == "RSET":
            marked.clear()
        if not line.startswith("RETR") and not line.startswith("TOP"):
            assert all(a.startswith(("+OK", "-ERR", "+ ")) for a in answer[:1])
    if d.closed is not None:
        assert d.committed == []
        return
    if quit_:
        d.say("QUIT")
    else:
        d.feed(b"")
    expected = [MESSAGES[n - 1] for n in sorted(marked)]
    assert d.committed == ([expected] if quit_ and expected else [])


def test_user_does_not_echo_a_bare_cr_into_its_reply() -> None:
    # Found by fuzzing: "USER x<CR>+OK fake" was echoed as it came.
    d = driver()
    assert d.feed(b"USER alice\r+OK fake\r\n") == ["+OK user: alice\\x0d+OK fake"]
