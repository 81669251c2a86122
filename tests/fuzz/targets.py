"""Fuzz targets: each takes arbitrary bytes, drives one parser and checks its invariants.

A target may only end in the parser's own error for bad input (``AddressError``,
``EnvelopeError``...); any other exception, or a broken invariant (an ``AssertionError``),
is a crash.  The same functions run under atheris (``python -m tests.fuzz``, coverage-guided)
and under hypothesis (tests/test_fuzz_properties.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emailrelay.admin.core import LINE_LIMIT, PROMPT, AdminSession
from emailrelay.auth import hashstate
from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.auth.sasl import Outcome, Plain, SaslServer
from emailrelay.auth.secrets import PLAIN, SecretsError, parse_secrets
from emailrelay.options import parser as options
from emailrelay.options.validate import validate
from emailrelay.policy.dnsbl import DnsblConfig, DnsblConfigError, query_name
from emailrelay.pop import protocol as pop
from emailrelay.pop.content import ContentEncoder, octet_count
from emailrelay.smtp import client
from emailrelay.smtp import server as smtp
from emailrelay.smtp.address import AddressError, parse_path
from emailrelay.spool import envelope
from emailrelay.tls.config import parse_tls_config
from emailrelay.uci import parser as uci
from tests.support.datascan import scan_pieces

_HOST_NAME = re.compile(r"([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*")
REPLY_LINE = re.compile(r"[2-5][0-9][0-9]([ -].*)?")
NO_NEWLINES = re.compile(r"[^\r\n]*")


def _pieces(data: bytes) -> list[bytes]:
    """Cut input into pieces whose sizes the input's first byte decides (1..256)."""
    size = (data[0] if data else 0) + 1
    body = data[1:]
    return [body[i:i + size] for i in range(0, len(body), size)] or [b""]


def _only_crlf(content: bytes) -> bool:
    return content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")


# -- SMTP server ------------------------------------------------------------------------------

def smtp_server(data: bytes) -> None:
    """A whole hostile client session against the sans-I/O server."""
    flags = data[0] if data else 0
    config = smtp.ServerConfig(
        domain="fuzz.example", max_size=0 if flags & 1 else 200, chunking=bool(flags & 2),
        smtputf8=bool(flags & 4), strict_parsing=not flags & 8,
        verify_recipients=bool(flags & 16), pipelining=not flags & 32, trace=True)
    p = smtp.ServerProtocol(config)
    closed = False
    message: bytearray | None = None
    for piece in [*_pieces(data), b""]:
        p.receive_data(piece)
        while (event := p.next_event()) not in (smtp.NEED_DATA, smtp.PAUSED):
            assert not closed, f"{event} after Close"
            if isinstance(event, smtp.Send):
                for line in event.lines:
                    assert REPLY_LINE.fullmatch(line), f"not a reply line: {line!r}"
                    assert NO_NEWLINES.fullmatch(line), f"newline in a reply: {line!r}"
            elif isinstance(event, smtp.MessageStart):
                assert message is None, "a message started inside another"
                message = bytearray()
            elif isinstance(event, smtp.MessageData):
                assert message is not None, "data outside a message"
                message += event.data
            elif isinstance(event, smtp.MessageAbort):
                message = None
            elif isinstance(event, smtp.MessageComplete):
                assert message is not None, "a message completed that never started"
                assert event.transaction.recipients, "a message without recipients"
                if not event.transaction.bdat:
                    assert _only_crlf(bytes(message)), "bare CR or LF stored"
                message = None
                p.message_stored("250 OK")
            elif isinstance(event, smtp.CheckRecipient):
                p.recipient_checked(accepted=len(event.address.raw) % 2 == 0)
            elif isinstance(event, smtp.VerifyRequest):
                p.vrfy_checked("252 cannot verify")
            elif isinstance(event, smtp.Close):
                closed = True
    assert closed, "end of input without a Close"


def smtp_address(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    for keyword, strict in (("FROM:", True), ("TO:", False)):
        try:
            arg = parse_path(f"{'MAIL' if keyword == 'FROM:' else 'RCPT'} {text}", keyword,
                             strict=strict, alabels=bool(data[:1] and data[0] & 1))
        except AddressError:
            continue
        for value in (arg.raw, arg.address, *arg.params, *arg.params.values()):
            assert not any(c in value for c in "\0\r\n"), f"control character in {value!r}"


def reference_data_phase(wire: bytes) -> tuple[bytes, bytes] | None:
    """RFC 5321 4.5.2 line by line: (content with bare CR/LF made CRLF, left over)."""
    if wire.startswith(b".\r\n"):
        return b"", wire[3:]
    end = wire.find(b"\r\n.\r\n")
    if end < 0:
        return None
    content = b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                       for line in wire[:end].split(b"\r\n"))
    content = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return content, wire[end + 5:]


def smtp_data_phase(data: bytes) -> None:
    """The bulk scanner agrees with a line-by-line reading, however the input is cut."""
    wire = data[1:]
    result = scan_pieces(_pieces(data))
    expected = reference_data_phase(wire)
    if result is None:
        assert expected is None, f"missed the end of data in {wire!r}"
    else:
        assert expected is not None, f"ended data early in {wire!r}"
        got_content, _ = result
        assert got_content == expected[0], f"{wire!r}: {got_content!r} != {expected[0]!r}"


# -- SMTP client --------------------------------------------------------------------------------

def smtp_client_replies(data: bytes) -> None:
    """The reply parser on arbitrary server output."""
    parser = client.ReplyParser()
    try:
        for piece in _pieces(data):
            parser.feed(piece)
            while (reply := parser.next_reply()) is not None:
                assert 100 <= reply.code <= 599
                assert all(NO_NEWLINES.fullmatch(line) for line in reply.lines)
    except client.ClientError:
        pass


def smtp_client_session(data: bytes) -> None:
    """A hostile smarthost: the client never crashes and always reaches an outcome."""
    flags = data[0] if data else 0
    p = client.ClientProtocol(client.ClientConfig(pipelining=bool(flags & 1),
                                                  must_accept_all_recipients=not flags & 2))
    message = client.OutgoingMessage("a@example.com", ["b@example.com", "c@example.com"],
                                     body_type="8bit" if flags & 4 else "7bit", size=100)
    sent = False
    closed = False
    for piece in [*_pieces(data), b""]:
        p.receive_data(piece)
        while (event := p.next_event()) is not client.NEED_DATA:
            assert not closed, f"{event} after Closed"
            if isinstance(event, client.Send):
                for line in event.lines:
                    assert NO_NEWLINES.fullmatch(line), f"newline in a command: {line!r}"
            elif isinstance(event, client.SessionReady):
                if sent:
                    p.quit()
                else:
                    sent = True
                    p.send_message(message)
            elif isinstance(event, client.SendContent):
                p.content_sent()
            elif isinstance(event, client.Closed):
                closed = True
    assert closed, "end of input without Closed"


# -- POP3 -------------------------------------------------------------------------------------

_SECRETS = parse_secrets("server plain alice secret\n", "fuzz")[0]
_MAILDROP = [b"Subject: one\r\n\r\n.dot\r\n", b"Subject: two\r\n\r\nbody\r\n"]


def pop3(data: bytes) -> None:
    p = pop.PopProtocol(pop.PopConfig(sasl=SaslServer(lambda: _SECRETS, "pop.example"),
                                      apop_challenge="<1.2@pop.example>"))
    closed = False
    for piece in [*_pieces(data), b""]:
        p.receive_data(piece)
        while (event := p.next_event()) not in (pop.NEED_DATA, pop.PAUSED):
            assert not closed, f"{event} after Close"
            if isinstance(event, pop.Send):
                for line in event.lines:
                    assert NO_NEWLINES.fullmatch(line), f"newline in a reply: {line!r}"
                assert event.lines[0].startswith(("+OK", "-ERR", "+ ")), event.lines
            elif isinstance(event, pop.OpenMaildrop):
                assert event.user == "alice", f"maildrop of {event.user!r} opened"
                p.maildrop_opened([pop.Listed(octet_count([m]), f"u{i}", m)
                                   for i, m in enumerate(_MAILDROP)])
            elif isinstance(event, pop.OpenMessage):
                p.message_opened(True)
            elif isinstance(event, pop.StreamMessage):
                encoder = ContentEncoder(event.body_lines)
                encoder.feed(event.ref)
                encoder.finish()
            elif isinstance(event, pop.Commit):
                p.committed(0)
            elif isinstance(event, pop.Close):
                closed = True
    assert closed, "end of input without a Close"


# -- files --------------------------------------------------------------------------------------

def envelope_file(data: bytes) -> None:
    """Any bytes parse or raise EnvelopeError; what we write reads back the same."""
    try:
        env = envelope.parse(data)
    except envelope.EnvelopeError:
        return
    again = envelope.parse(env.to_bytes())
    assert (again.from_, again.recipients, again.extra) == (env.from_, env.recipients,
                                                             env.extra), f"{env} != {again}"
    # Writing normalises (xtext fields, folding) once; after that it is a fixed point.
    assert envelope.parse(again.to_bytes()) == again, f"{again} changes when written"


def secrets_file(data: bytes) -> None:
    """Any text parses or raises SecretsError; every plain server secret read logs in."""
    try:
        secrets, warnings = parse_secrets(data.decode("utf-8", "surrogateescape"), "fuzz")
    except SecretsError as e:
        assert NO_NEWLINES.fullmatch(str(e)), f"a newline in the error {e!r}"
        return
    assert all(NO_NEWLINES.fullmatch(w) for w in warnings), warnings
    for (type_, user), secret in secrets.server.items():
        assert (type_, user) == (secret.type, secret.id)
        response = b"\0" + user.encode("utf-8", "surrogateescape") + b"\0" + secret.value
        if type_ == PLAIN and response.count(b"\0") == 2 and user and secret.value:
            outcome = Plain(secrets).respond(response)
            assert outcome.ok, f"{secret.describe()} does not log in: {outcome}"


# -- authentication, TLS, admin and policy configuration -------------------------------------

_ACCOUNTS = parse_secrets(
    "server plain alice secret\n"
    f"server md5 carol {base64.b64encode(hashstate.make_secret(b'pw')).decode()}\n", "fuzz")[0]
_SASL = SaslServer(lambda: _ACCOUNTS, "fuzz.example")
_PASSWORDS = {"alice": b"secret", "carol": b"pw"}


def _right_answer(name: str, user: str, password: bytes, challenge: bytes) -> bytes:
    """What a client that knows ``password`` answers to ``challenge``."""
    if name == "APOP":
        return f"{user} {hashlib.md5(challenge + password).hexdigest()}".encode()
    digest = hmac.new(password, challenge, name.removeprefix("CRAM-").lower()).hexdigest()
    return f"{user} {digest}".encode()


def sasl(data: bytes) -> None:
    """Every mechanism on hostile responses: one outcome, a success only for the right
    password, and log text that cannot forge lines."""
    names = [*_SASL.mechanisms(), "APOP"]
    name = names[(data[0] if data else 0) % len(names)]
    mechanism = _SASL.apop("<1.2@fuzz.example>") if name == "APOP" else _SASL.start(name)
    assert mechanism is not None
    challenge = mechanism.challenge()
    responses = data[1:].split(b"\n")
    outcome = None
    for step, response in enumerate(responses):
        result = mechanism.respond(response)
        if isinstance(result, Outcome):
            outcome = result
            responses = responses[:step + 1]  # what the mechanism read
            break
        assert name == "LOGIN" and step == 0, f"{name} asked again after {response!r}"
    if outcome is None:
        assert name == "LOGIN" and len(responses) == 1, responses
        return
    assert outcome.mechanism == name
    assert NO_NEWLINES.fullmatch(outcome.describe()), outcome.describe()
    if outcome.ok:
        password = _PASSWORDS.get(outcome.user)
        assert password is not None, f"{outcome.user!r} logged in with {name}"
        if name in ("PLAIN", "LOGIN"):
            given = responses[-1].split(b"\0")[-1] if name == "PLAIN" else responses[-1]
            assert given == password, f"{name} let in {responses!r}"
        else:
            assert responses[0].lower() == _right_answer(name, outcome.user, password,
                                                         challenge), responses


def sasl_config(data: bytes) -> None:
    """``--server-auth-config`` and ``--client-auth-config``: filtering keeps the order and
    takes nothing that was not offered."""
    text = data.decode("utf-8", "surrogateescape")
    offered = [*_SASL.mechanisms(), "XOAUTH2", "OAUTHBEARER"]
    for bare_list in (False, True):
        try:
            config = MechanismConfig.parse(text, bare_list=bare_list)
        except ValueError as e:
            assert str(e).startswith("invalid item "), e
            continue
        for secure in (False, True):
            kept = config.apply(offered, secure)
            assert kept == [m for m in offered if m in kept], f"{kept} out of order"


def tls_config(data: bytes) -> None:
    """``--tls-config`` values (NUL-separated): an error, or versions a context takes."""
    values = data.decode("utf-8", "surrogateescape").split("\0")
    try:
        config = parse_tls_config(values)
    except ValueError:
        return
    assert all(note.startswith("tls-config: ") for note in config.notes), config.notes
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = config.minimum
    context.maximum_version = config.maximum
    context.options |= config.options


@dataclass
class _AdminBackend:
    forwarding: _Forwarding | None = None
    pid: int = 1
    calls: list[str] = field(default_factory=list)

    def ready_ids(self) -> list[str]:
        return ["emailrelay.1.2.3"]

    def failed_ids(self) -> list[str]:
        return []

    def unfail_all(self) -> None:
        self.calls.append("unfail")

    def status_lines(self) -> list[str]:
        return ["IN started: 1"]

    def info(self) -> dict[str, str]:
        return {"version": "2.6", "warranty": "none\nat all"}

    def set_smtp_enabled(self, enabled: bool) -> None:
        self.calls.append(f"smtp {enabled}")

    def suspend_dnsbl(self, seconds: int | None) -> None:
        assert seconds is None or 0 <= seconds <= 4294967295, seconds
        self.calls.append(f"dnsbl {seconds}")

    def terminate(self) -> None:
        raise AssertionError("the core never terminates by itself")


class _Forwarding:
    def request_forward(self, reason: str) -> None:
        assert reason == "admin"

    async def flush(self) -> str:
        return ""


def admin(data: bytes) -> None:
    """The admin command core on a hostile client: bounded input, a prompt after every
    reply, the client's line ending, and terminate only where it is allowed."""
    flags = data[0] if data else 0
    allowed = bool(flags & 1)
    session = AdminSession(_AdminBackend(_Forwarding() if flags & 2 else None),
                           terminate_allowed=allowed)
    for piece in _pieces(data):
        out = session.receive_data(piece)
        assert len(session._buffer) <= LINE_LIMIT, "unbounded input buffer"
        assert not out.terminate or allowed, "terminate without --admin-terminate"
        if out.data and not out.close:
            assert out.data.endswith(PROMPT.encode()) or b"EVENT: " in out.data, out.data
        if session.eol == "\r\n":
            assert b"\n" not in out.data.replace(b"\r\n", b""), f"bare LF in {out.data!r}"
        if out.flush:
            assert session.flush_done("").endswith(PROMPT.encode())
        if out.close is not None or out.terminate:
            return


def dnsbl(data: bytes) -> None:
    """``--dnsbl`` values: an error, or a configuration that says the same when written
    back in the documented order, whose list names make query names."""
    text = data.decode("utf-8", "surrogateescape")
    try:
        config = DnsblConfig.parse(text)
    except DnsblConfigError:
        return
    assert config.lists and config.threshold >= 0 and config.timeout > 0, config
    for zone in config.lists:
        for address in ("192.0.2.1", "2001:db8::1"):
            assert query_name(address, zone).endswith(f".{zone}."), (address, zone)
    if not all(_HOST_NAME.fullmatch(zone) for zone in config.lists):
        return  # DNS escapes (\\000) and numeric top-level names cannot be written back
    milliseconds = round(config.timeout * 1000)
    fields = [*config.lists, str(config.threshold),
              f"{'-' if config.block_when_undecided else ''}{milliseconds}"]
    if config.nameserver is not None:
        host, port = config.nameserver
        fields.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    again = DnsblConfig.parse(",".join(fields))
    assert again == config, f"{text!r}: {config} written back reads as {again}"


def uci_file(data: bytes) -> None:
    with contextlib.suppress(uci.UciError):
        uci.parse(data.decode("utf-8", "surrogateescape"), "fuzz")


_CONFIG = Path(tempfile.gettempdir()) / "emailrelay-fuzz.conf"


def options_line(data: bytes) -> None:
    """A command line (NUL-separated words) and the same words as a configuration file."""
    words = data.decode("utf-8", "surrogateescape").replace("\0", "\n").split("\n")
    with contextlib.suppress(options.UsageError):
        validate(options.parse(words[:40], read_config=False))
    _CONFIG.write_bytes(data.replace(b"\0", b"\n"))
    with contextlib.suppress(options.UsageError):
        validate(options.build(options.read_config_file(str(_CONFIG)), str(_CONFIG)))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "smtp_server": smtp_server,
    "smtp_address": smtp_address,
    "smtp_data_phase": smtp_data_phase,
    "smtp_client_replies": smtp_client_replies,
    "smtp_client_session": smtp_client_session,
    "pop3": pop3,
    "envelope": envelope_file,
    "secrets": secrets_file,
    "uci": uci_file,
    "options": options_line,
    "sasl": sasl,
    "sasl_config": sasl_config,
    "tls_config": tls_config,
    "admin": admin,
    "dnsbl": dnsbl,
}

# Starting points: one well-formed input per target, so that fuzzing begins deep.
SEEDS: dict[str, list[bytes]] = {
    "smtp_server": [b"\x03EHLO c\r\nMAIL FROM:<a@b.c> BODY=8BITMIME SIZE=10\r\n"
                    b"RCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
                    b"BDAT 3 LAST\r\nabcRSET\r\nVRFY x\r\nNOOP\r\nQUIT\r\n"],
    "smtp_address": [b"\x00FROM:<@route:a@b.example> SIZE=10 BODY=8BITMIME",
                     b"\x01TO:<postmaster> NOTIFY=NEVER", b"\x00FROM:<\"q q\"@[1.2.3.4]>"],
    "smtp_data_phase": [b"\x07Subject: x\r\n\r\n..a\r\nb\rc\nd\r\n.\r\nMAIL"],
    "smtp_client_replies": [b"\x10220 hi\r\n250-a\r\n250-SIZE 10\r\n250 PIPELINING\r\n"],
    "smtp_client_session": [b"\x20220 hi\r\n250-x\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                            b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n250 done\r\n221 bye\r\n"],
    "pop3": [b"\x08CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 1\r\n"
             b"RETR 1\r\nTOP 2 0\r\nDELE 1\r\nRSET\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
             b"QUIT\r\n"],
    "envelope": [b"X-MailRelay-Format: #2821.8\r\nX-MailRelay-Content: 8bit\r\n"
                 b"X-MailRelay-From: a@b.c\r\nX-MailRelay-ToCount: 2\r\n"
                 b"X-MailRelay-To-Remote: d@e.f\r\nX-MailRelay-To-Local: g\r\n"
                 b"X-MailRelay-Authentication: bob+2B\r\nX-MailRelay-Client: 127.0.0.1\r\n"
                 b"X-MailRelay-ClientCertificate: \r\nX-MailRelay-MailFromAuthIn: +\r\n"
                 b"X-MailRelay-MailFromAuthOut: \r\nX-MailRelay-ForwardTo: \r\n"
                 b"X-MailRelay-ForwardToAddress: \r\nX-MailRelay-ClientAccountSelector: \r\n"
                 b"X-MailRelay-Utf8MailboxNames: 0\r\nX-MailRelay-End: 1\r\n"
                 b"X-MailRelay-RetryCount: 2\r\n"],
    "secrets": [b"server plain alice secret\nclient md5 bob x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+W"
                b"oqLz+rBwSKbw= sel\nserver none 192.168.0.0/24 trusted\n# c\n"
                b"login client carol p\n"],
    "uci": [b"package emailrelay\nconfig emailrelay 'main'\n\toption port '25'\n"
            b"\tlist filter \"a b\"\n\toption enabled 1 # x\n"],
    "options": [b"--as-proxy\x00smarthost:25\x00--port\x0010025\x00--filter\x00/bin/true\x00"
                b"--pop\x00--pop-auth\x00/etc/x\x00in-spool-dir\x00/tmp"],
    "sasl": [b"\x04\x00alice\x00secret", b"\x05alice\nsecret", b"\x00carol 0123456789abcdef",
             b"\x06alice 00112233445566778899aabbccddeeff"],
    "sasl_config": [b"m:cram-sha256,plain;x:login;a:plain,login;d:cram-md5", b"plain,login"],
    "tls_config": [b"tlsv1.2,-tlsv1.3,op_no_ticket\x00noverify,mbedtls,ignoreextra,x"],
    "admin": [b"\x03help\r\nstatus\r\nlist\r\nnotify\r\nflush\r\nforward\r\n"
              b"info version\r\ndnsbl stop 60\r\nsmtp disable\r\nunfail-all\r\nterminate\r\n"],
    "dnsbl": [b"zen.example,bl.example.,2,-1500,127.0.0.1:53",
              b"[::1]:5353,5s,1,bl.example,other.example"],
}
