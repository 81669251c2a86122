"""SMTP AUTH in the sans-I/O server core: E-MailRelay's replies, order of checks and bad input."""

from __future__ import annotations

import base64
import hmac
import re
from pathlib import Path

import pytest

from emailrelay.auth import hashstate
from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.auth.secrets import SecretsFile
from emailrelay.auth.server import ServerAuth
from emailrelay.smtp import server as proto
from emailrelay.smtp.server import ServerConfig, ServerProtocol

SECRETS = (
    "server plain alice e+3Dmc2\n"
    f"server md5 carol {base64.b64encode(hashstate.make_secret(b'my password')).decode()}\n"
    "server none 192.168.0.* localipv4\n"
    "server none fe80::/64 localipv6\n"
)
ALL = "CRAM-SHA512 CRAM-SHA256 CRAM-SHA1 CRAM-MD5 PLAIN LOGIN"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@pytest.fixture
def auth(tmp_path: Path) -> ServerAuth:
    path = tmp_path / "secrets"
    path.write_text(SECRETS)
    path.chmod(0o600)
    return ServerAuth(SecretsFile(str(path)), "relay.example")


class Session:
    """Drives the protocol like the adapter, keeping every event."""

    def __init__(self, **config: object) -> None:
        self.p = ServerProtocol(ServerConfig(domain="relay.example", **config))
        self.events: list[object] = []

    def say(self, text: str) -> list[str]:
        self.p.receive_data(text.encode() if "\r\n" in text else (text + "\r\n").encode())
        lines: list[str] = []
        while (ev := self.p.next_event()) not in (proto.NEED_DATA, proto.PAUSED):
            self.events.append(ev)
            if isinstance(ev, proto.Send):
                lines += ev.lines
        return lines

    def one(self, text: str) -> str:
        lines = self.say(text)
        assert len(lines) == 1, lines
        return lines[0]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def warnings(self) -> list[str]:
        return [w.text for w in self.of(proto.ProtocolWarning)]


def ehlo(auth: ServerAuth, **config: object) -> Session:
    s = Session(authenticator=auth, **config)
    s.say("EHLO client.example")
    return s


def test_ehlo_advertises_what_the_secrets_allow(auth: ServerAuth) -> None:
    s = Session(authenticator=auth)
    assert f"250-AUTH {ALL}" in s.say("EHLO c")
    assert not any("AUTH" in line for line in Session().say("EHLO c"))


def test_plain_with_initial_response_and_the_envelope_id(auth: ServerAuth) -> None:
    s = ehlo(auth)
    assert s.one(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'e=mc2')}") == (
        "235 authentication successful")
    assert s.p.authenticated_user == "alice" and s.p.auth_id == "alice"
    assert s.of(proto.AuthDone)[0].outcome.ok
    assert s.one("MAIL FROM:<a@b> AUTH=<>").startswith("250")
    assert s.p.transaction.auth_param == "<>"


def test_plain_after_an_empty_challenge_and_the_equals_sign(auth: ServerAuth) -> None:
    s = ehlo(auth)
    assert s.one("AUTH PLAIN") == "334 "
    assert s.one(b64("\0alice\0e=mc2")) == "235 authentication successful"
    s = ehlo(auth)
    assert s.one("AUTH PLAIN =") == "535 authentication failed"  # "=": an empty response


def test_login_prompts(auth: ServerAuth) -> None:
    s = ehlo(auth)
    assert s.one("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert s.one(b64("alice")) == "334 UGFzc3dvcmQ6"
    assert s.one(b64("e=mc2")) == "235 authentication successful"
    s = ehlo(auth)
    assert s.one(f"auth login {b64('alice')}") == "334 UGFzc3dvcmQ6"  # initial response


@pytest.mark.parametrize("name", ["CRAM-MD5", "CRAM-SHA1", "CRAM-SHA256", "CRAM-SHA512"])
def test_cram_mechanisms_with_a_plain_secret(auth: ServerAuth, name: str) -> None:
    s = ehlo(auth)
    challenge = base64.b64decode(s.one(f"AUTH {name}")[4:])
    assert re.fullmatch(rb"<[0-9]+\.[0-9]+@relay\.example>", challenge)
    digest = hmac.new(b"e=mc2", challenge, name[5:].lower()).hexdigest()
    assert s.one(b64(f"alice {digest}")) == "235 authentication successful"
    assert s.p.auth_mechanism == name


def test_cram_md5_with_an_md5_secret(auth: ServerAuth) -> None:
    s = ehlo(auth)
    challenge = base64.b64decode(s.one("AUTH CRAM-MD5")[4:])
    digest = hmac.new(b"my password", challenge, "md5").hexdigest()
    assert s.one(b64(f"carol {digest}")) == "235 authentication successful"


@pytest.mark.parametrize(("command", "response", "reason"), [
    ("AUTH PLAIN " + b64("\0alice\0wrong"), None, "wrong password"),
    ("AUTH PLAIN " + b64("\0mallory\0e=mc2"), None, "no such account"),
    ("AUTH LOGIN", "bad base64!", "invalid base64 encoding"),
    ("AUTH CRAM-MD5", b64("alice 00"), "wrong password"),
    # Found by fuzzing: a digest that is not ASCII was a traceback and a dropped connection.
    ("AUTH CRAM-SHA256", base64.b64encode(b"alice \x80").decode(), "wrong password"),
])
def test_failures_answer_535_and_say_why_in_the_log(auth: ServerAuth, command: str,
                                                    response: str | None, reason: str) -> None:
    s = ehlo(auth)
    reply = s.one(command)
    if response is not None:
        assert reply.startswith("334")
        reply = s.one(response)
    assert reply == "535 authentication failed"
    outcome = s.of(proto.AuthDone)[-1].outcome
    assert not outcome.ok and outcome.reason == reason
    assert outcome.describe().startswith("failed authentication of remote client using "
                                         "mechanism [")
    assert s.p.authenticated_user is None and s.p.state is proto.State.IDLE


def test_a_hostile_user_name_cannot_forge_log_lines(auth: ServerAuth) -> None:
    s = ehlo(auth)
    s.one("AUTH PLAIN " + b64("\0x\nemailrelay: warning: 10.0.0.1; failed authentication\0p"))
    text = s.of(proto.AuthDone)[-1].outcome.describe()
    assert "\n" not in text and "x\\x0aemailrelay" in text


def test_third_failure_closes_the_connection(auth: ServerAuth) -> None:
    s = ehlo(auth)
    for _ in range(2):
        assert s.one("AUTH PLAIN " + b64("\0alice\0nope")) == "535 authentication failed"
    assert s.one("AUTH PLAIN " + b64("\0alice\0nope")).startswith("421 ")
    assert s.of(proto.Close)


def test_cancel_with_a_star(auth: ServerAuth) -> None:
    s = ehlo(auth)
    s.one("AUTH LOGIN")
    assert s.one("*") == "501 authentication cancelled"
    assert s.p.state is proto.State.IDLE and not s.of(proto.AuthDone)
    assert s.one("AUTH PLAIN " + b64("\0alice\0e=mc2")).startswith("235")


def test_auth_before_ehlo_and_twice(auth: ServerAuth) -> None:
    s = Session(authenticator=auth)
    assert s.one("AUTH PLAIN") == "503 command out of sequence -- use RSET to resynchronise"
    s.say("EHLO c")
    s.one("AUTH PLAIN " + b64("\0alice\0e=mc2"))
    assert s.one("AUTH PLAIN " + b64("\0alice\0e=mc2")).startswith("503 ")
    assert "too many AUTH requests" in s.warnings()
    assert any(line.startswith("250-AUTH") for line in s.say("EHLO c"))  # offered again
    assert s.p.authenticated_user is None  # EHLO starts a new session, as in E-MailRelay


def test_auth_inside_a_transaction_is_out_of_sequence(auth: ServerAuth) -> None:
    s = ehlo(auth, trusted="localipv4")
    s.one("MAIL FROM:<a@b>")
    assert s.one("AUTH PLAIN").startswith("503 ")


def test_unknown_mechanism_initial_response_rules_and_bad_base64(auth: ServerAuth) -> None:
    s = ehlo(auth)
    assert s.one("AUTH XOAUTH2") == "504 unsupported authentication mechanism"
    assert s.one("AUTH") == "504 unsupported authentication mechanism"
    assert s.one("AUTH CRAM-MD5 " + b64("x")) == "501 invalid argument"
    assert s.one("AUTH PLAIN not*base64") == "501 invalid argument"
    assert s.warnings() == [
        "request for unsupported server AUTH mechanism: XOAUTH2",
        "request for unsupported server AUTH mechanism: ",
        "unexpected initial-response with a server-first AUTH mechanism",
        "invalid base64 encoding of AUTH parameter"]


def test_auth_without_server_auth_is_not_implemented() -> None:
    s = Session()
    s.say("EHLO c")
    assert s.one("AUTH PLAIN") == "502 command not implemented"
    assert s.warnings() == ["client protocol error: AUTH requested but not advertised"]


def test_mail_needs_a_login_unless_the_address_is_trusted(auth: ServerAuth) -> None:
    s = ehlo(auth)
    assert s.one("MAIL FROM:<a@b>") == "530 authentication required"
    assert s.one("VRFY bob") == "530 authentication required"
    assert next(n.text for n in s.of(proto.Notice)) == (
        "server authentication enabled but not a trusted address")
    trusted = ehlo(auth, trusted="localipv4")
    assert trusted.one("MAIL FROM:<a@b>").startswith("250")
    assert trusted.p.auth_id == "localipv4" and trusted.p.authenticated_user is None
    assert Session(trusted="x").p.auth_id == ""  # no --server-auth: no id


def test_tls_required_hides_every_mechanism_until_secure(auth: ServerAuth) -> None:
    s = ehlo(auth, tls_required=True, tls_available=True)
    assert not any(line.startswith("250-AUTH") for line in s.say("EHLO c"))
    assert s.one("AUTH PLAIN " + b64("\0alice\0e=mc2")) == (
        "504 unsupported authentication mechanism: use starttls")
    assert "rejecting authentication attempt without encryption" in s.warnings()
    assert s.one("MAIL FROM:<a@b>") == "530 authentication required: use starttls"
    s.p.secure = True  # as after STARTTLS
    assert f"250-AUTH {ALL}" in s.say("EHLO c")
    assert s.one("AUTH PLAIN " + b64("\0alice\0e=mc2")).startswith("235")
    assert s.one("MAIL FROM:<a@b>").startswith("250")
    plain = ehlo(auth, tls_required=True)  # no STARTTLS to offer: no hint
    assert plain.one("AUTH PLAIN") == "504 unsupported authentication mechanism"


def test_config_allows_plaintext_mechanisms_only_after_tls(auth: ServerAuth) -> None:
    auth.config = MechanismConfig.parse("m:;a:plain,login")
    s = ehlo(auth)
    assert not any("AUTH" in line for line in s.say("EHLO c"))
    assert s.one("AUTH PLAIN").startswith("504 ")
    s.p.secure = True
    assert "250-AUTH PLAIN LOGIN" in s.say("EHLO c")
    auth.config = MechanismConfig.parse("x:cram-sha512,cram-sha1")
    assert "250-AUTH CRAM-SHA256 CRAM-MD5 PLAIN LOGIN" in ehlo(auth).say("EHLO c")


def test_over_long_auth_lines(auth: ServerAuth) -> None:
    s = ehlo(auth)
    s.one("AUTH LOGIN")
    assert s.one("A" * 13000) == "500 line too long"
    assert s.p.state is proto.State.IDLE  # the exchange is over
    assert s.one("AUTH PLAIN " + "A" * 13000) == "500 line too long"
    long_ok = b64("\0alice\0" + "x" * 6000)  # over 4096 octets: still an AUTH line
    assert s.one("AUTH PLAIN " + long_ok) == "535 authentication failed"
    assert s.one("NOOP " + "x" * 5000) == "500 line too long"


def test_trust_rules_for_ipv4_and_ipv6(auth: ServerAuth) -> None:
    assert auth.trust("192.168.0.40").keyword == "localipv4"
    assert auth.trust("::ffff:192.168.0.40").keyword == "localipv4"
    assert auth.trust("fe80::1:2").keyword == "localipv6"
    assert auth.trust("192.168.1.40") is None and auth.trust("2001:db8::1") is None


def test_the_protocol_trace_never_shows_sasl_data(auth: ServerAuth) -> None:
    s = ehlo(auth, trace=True)
    secret = b64("\0alice\0e=mc2")
    s.say(f"AUTH PLAIN {secret}")
    other = ehlo(auth, trace=True)
    other.say("AUTH LOGIN")
    other.say(b64("alice"))
    traces = [t.text for t in s.of(proto.Trace) + other.of(proto.Trace)]
    assert 'rx<<: "AUTH PLAIN [initial response not logged]"' in traces
    assert "rx<<: [authentication response not logged]" in traces
    assert not any(secret in t or b64("alice") in t for t in traces)


def test_mechanism_config_parsing() -> None:
    mechanisms = ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert MechanismConfig.parse("").apply(mechanisms, False) == mechanisms
    both = MechanismConfig.parse("M:login,plain; x:login")
    assert both.apply(mechanisms, False) == both.apply(mechanisms, True) == ["PLAIN"]
    split = MechanismConfig.parse("d:cram-md5")  # a d: list: m:/x: apply before TLS only
    assert split.apply(mechanisms, False) == mechanisms
    assert split.apply(mechanisms, True) == ["PLAIN", "LOGIN"]
    assert MechanismConfig.parse("plain,login", bare_list=True).apply(mechanisms, True) == [
        "PLAIN", "LOGIN"]
    for bad in ("plain", "q:plain", "m plain"):
        with pytest.raises(ValueError, match="invalid item"):
            MechanismConfig.parse(bad)
