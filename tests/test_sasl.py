"""SASL mechanisms: RFC examples, E-MailRelay's md5 secrets, and every way to fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emailrelay.auth import hashstate
from emailrelay.auth.sasl import Apop, Cram, Login, Outcome, Plain, SaslServer, make_challenge
from emailrelay.auth.secrets import parse_secrets

# The 2.6 reference documentation's emailrelay-passwd examples.
DOC_MD5 = {
    b"password123": "9N2IRYVXqu7SkOW1Xat+wpR9NbA2R6fb61XlmqW+46E=",
    b"e=mc2": "v1HOpuLIbbvgoJjhueeoqwfvtIp2C+gMA285ke+xxow=",
    b"my password": "x6UJKQF9f7HfhS1M+PW4s8rXIoT+L+WoqLz+rBwSKbw=",
}
SECRETS = parse_secrets(
    "server plain tim tanstaaftanstaaf\n"
    "server plain mrose tanstaaf\n"
    f"server md5 carol {DOC_MD5[b'my password']}\n"
    f"server md5 alice {DOC_MD5[b'e=mc2']}\n"
    "server plain alice e+3Dmc2\n"
    "server plain:b c3BhY2UgbWFu cGFzcyB3b3Jk\n",  # "space man" / "pass word"
    "test")[0]


@pytest.mark.parametrize("password", sorted(DOC_MD5))
def test_md5_secrets_match_emailrelay_passwd(password: bytes) -> None:
    assert base64.b64encode(hashstate.make_secret(password)).decode() == DOC_MD5[password]


def test_dotted_form_round_trip() -> None:
    secret = hashstate.make_secret(b"password123")
    dotted = hashstate.to_dotted(secret)
    assert dotted.startswith("1166597620.4004140933.")
    assert hashstate.is_dotted(dotted) and hashstate.from_dotted(dotted) == secret
    assert not hashstate.is_dotted("1.2.3.4.5.6.7")
    assert not hashstate.is_dotted("1.2.3.4.5.6.7.4294967296")  # bigger than 32 bits


@given(st.binary(max_size=300))
def test_hand_written_md5_is_md5(data: bytes) -> None:
    assert hashstate.digest("md5", data) == hashlib.md5(data).digest()


@given(st.binary(max_size=100), st.binary(max_size=200))
def test_hmac_from_an_md5_secret_equals_hmac_md5_of_the_password(password: bytes,
                                                                 message: bytes) -> None:
    secret = hashstate.make_secret(password)
    expected = hmac.new(password, message, "md5").digest()
    assert hashstate.hmac_from_secret(secret, message) == expected


def test_hmac_md5_refuses_a_secret_of_the_wrong_size() -> None:
    with pytest.raises(ValueError):
        hashstate.hmac_from_secret(b"short", b"x")


def test_rfc_2195_cram_md5_example() -> None:
    challenge = "<1896.697170952@postoffice.reston.mci.net>"
    cram = Cram(SECRETS, challenge, "MD5")
    assert cram.server_first and cram.name == "CRAM-MD5"
    assert base64.b64encode(cram.challenge()) == (
        b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+")
    response = base64.b64decode("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw")
    assert cram.respond(response) == Outcome(True, "tim", "CRAM-MD5")


def test_rfc_1939_apop_example() -> None:
    apop = Apop(SECRETS, "<1896.697170952@dbc.mtview.ca.us>")
    assert apop.respond(b"mrose c4c9334bac560ecc979e58001b3e22fb").ok
    assert not apop.respond(b"mrose c4c9334bac560ecc979e58001b3e22fc").ok


def test_apop_cannot_use_an_md5_secret() -> None:
    apop = Apop(SECRETS, "<1.2@x>")
    digest = hashlib.md5(b"<1.2@x>my password").hexdigest()
    outcome = apop.respond(f"carol {digest}".encode())
    assert not outcome.ok and outcome.reason == "no secret usable with APOP"


@pytest.mark.parametrize("user", ["carol", "alice"])
def test_cram_md5_with_an_md5_secret(user: str) -> None:
    password = {"carol": b"my password", "alice": b"e=mc2"}[user]
    challenge = make_challenge("example.com")
    digest = hmac.new(password, challenge.encode(), "md5").hexdigest()
    cram = Cram(SECRETS, challenge, "MD5")
    assert cram.respond(f"{user} {digest}".encode()).ok
    assert Cram(SECRETS, challenge, "MD5").respond(f"{user} {digest.upper()}".encode()).ok
    wrong = hmac.new(b"wrong", challenge.encode(), "md5").hexdigest()
    outcome = Cram(SECRETS, challenge, "MD5").respond(f"{user} {wrong}".encode())
    assert outcome == Outcome(False, user, "CRAM-MD5", "wrong password")


@pytest.mark.parametrize("hash_name", ["SHA1", "SHA256", "SHA512"])
def test_cram_sha_with_a_plain_secret(hash_name: str) -> None:
    challenge = "<5.6@example.com>"
    digest = hmac.new(b"tanstaaftanstaaf", challenge.encode(), hash_name.lower()).hexdigest()
    assert Cram(SECRETS, challenge, hash_name).respond(f"tim {digest}".encode()).ok


def test_cram_sha_cannot_use_an_md5_secret_and_says_why() -> None:
    outcome = Cram(SECRETS, "<1@x>", "SHA256").respond(b"carol " + b"0" * 64)
    assert outcome == Outcome(False, "carol", "CRAM-SHA256", "no secret usable with CRAM-SHA256")


def test_cram_user_names_may_contain_spaces() -> None:
    challenge = "<7@x>"
    digest = hmac.new(b"pass word", challenge.encode(), "md5").hexdigest()
    assert Cram(SECRETS, challenge, "MD5").respond(f"space man {digest}".encode()).user == (
        "space man")


@pytest.mark.parametrize(("response", "reason"), [
    (b"nodigest", "malformed CRAM-MD5 response"),
    (b" 123", "malformed CRAM-MD5 response"),
    (b"nobody 0123456789abcdef0123456789abcdef", "no such account"),
    # Found by fuzzing: a digest that is not ASCII was a TypeError (a traceback and a
    # dropped connection, with no failed-login line for fail2ban).
    (b"tim \x80", "wrong password"),
    ("tim caf\u00e9".encode(), "wrong password"),
    (b"nobody \xff\xfe", "no such account"),
])
def test_cram_failures(response: bytes, reason: str) -> None:
    outcome = Cram(SECRETS, "<1@x>", "MD5").respond(response)
    assert not outcome.ok and outcome.reason == reason


def test_apop_with_a_digest_that_is_not_ascii_fails_cleanly() -> None:
    outcome = Apop(SECRETS, "<1@x>").respond("tim \u00e9t\u00e9".encode())
    assert not outcome.ok and outcome.reason == "wrong password"


def test_plain_with_plain_and_md5_secrets() -> None:
    assert Plain(SECRETS).challenge() == b""
    assert Plain(SECRETS).respond(b"\0tim\0tanstaaftanstaaf").ok
    assert Plain(SECRETS).respond(b"carol\0carol\0my password").ok
    assert Plain(SECRETS).respond(b"\0space man\0pass word").ok


@pytest.mark.parametrize(("response", "reason"), [
    (b"\0tim\0wrong", "wrong password"),
    (b"\0carol\0wrong", "wrong password"),
    (b"\0nobody\0x", "no such account"),
    (b"tim\0tanstaaftanstaaf", "malformed PLAIN response"),
    (b"\0\0tanstaaftanstaaf", "malformed PLAIN response"),
    (b"\0tim\0", "malformed PLAIN response"),
    (b"", "malformed PLAIN response"),
    (b"mrose\0tim\0tanstaaftanstaaf", "acting for another user [mrose] is not allowed"),
    # Found by the sasl fuzz target: the authzid came into the log line raw, so a CR or
    # LF in it could forge a line; it is escaped like the user name.
    (b"a\r\nemailrelay: info: forged\xff\0tim\0tanstaaftanstaaf",
     "acting for another user [a\\x0d\\x0aemailrelay: info: forged\\xff] is not allowed"),
])
def test_plain_failures(response: bytes, reason: str) -> None:
    outcome = Plain(SECRETS).respond(response)
    assert not outcome.ok and outcome.reason == reason and outcome.mechanism == "PLAIN"


def test_login_asks_for_user_name_then_password() -> None:
    login = Login(SECRETS)
    assert login.challenge() == b"Username:"
    assert login.respond(b"carol") == b"Password:"
    assert login.respond(b"my password") == Outcome(True, "carol", "LOGIN")
    failed = Login(SECRETS)
    failed.respond(b"tim")
    assert failed.respond(b"nope") == Outcome(False, "tim", "LOGIN", "wrong password")
    empty = Login(SECRETS)
    empty.respond(b"")
    assert not empty.respond(b"x").ok


def test_mechanism_lists_follow_the_secrets() -> None:
    def server(text: str) -> SaslServer:
        secrets = parse_secrets(text, "t")[0]
        return SaslServer(lambda: secrets, "example.com")

    plain = server("server plain a b\n")
    assert plain.mechanisms() == ["CRAM-SHA512", "CRAM-SHA256", "CRAM-SHA1", "CRAM-MD5",
                                  "PLAIN", "LOGIN"]
    assert plain.apop_available()
    hashed = server(f"server md5 carol {DOC_MD5[b'my password']}\n")
    assert hashed.mechanisms() == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert not hashed.apop_available()
    assert hashed.start("cram-sha1") is None
    nothing = server("client plain a b\nserver none 10.0.0.0/8 x\n")
    assert nothing.mechanisms() == [] and nothing.start("PLAIN") is None


def test_start_makes_fresh_challenges() -> None:
    sasl = SaslServer(lambda: SECRETS, "pop.example.com")
    first, second = sasl.start("cram-md5"), sasl.start("CRAM-MD5")
    assert isinstance(first, Cram) and isinstance(second, Cram)
    assert first.challenge() != second.challenge()
    assert first.challenge().startswith(b"<") and first.challenge().endswith(
        b"@pop.example.com>")
    assert isinstance(sasl.start("plain"), Plain) and isinstance(sasl.start("LOGIN"), Login)
    assert sasl.start("XOAUTH2") is None


def test_long_passwords_work_with_md5_secrets() -> None:
    password = bytes(b or 1 for b in os.urandom(80))  # longer than a block: hashed first
    secret = base64.b64encode(hashstate.make_secret(password)).decode()
    secrets = parse_secrets(f"server md5 u {secret}\n", "t")[0]
    assert Plain(secrets).respond(b"\0u\0" + password).ok
    digest = hmac.new(password, b"<c>", "md5").hexdigest()
    assert Cram(secrets, "<c>", "MD5").respond(f"u {digest}".encode()).ok


@pytest.mark.parametrize("name", ["md5", "sha1", "sha256"])
@given(data=st.binary(max_size=200))
def test_hand_written_hashes_are_the_real_ones(name: str, data: bytes) -> None:
    assert hashstate.digest(name, data) == hashlib.new(name, data).digest()


@pytest.mark.parametrize("name", ["sha1", "sha256"])
def test_cram_sha_with_a_hashed_secret_and_plain_login_deriving_it(name: str) -> None:
    secret = base64.b64encode(hashstate.make_secret(b"pass word", name)).decode()
    secrets = parse_secrets(f"server {name} dora {secret}\n", "t")[0]
    sasl = SaslServer(lambda: secrets, "example.com")
    assert sasl.mechanisms() == [f"CRAM-{name.upper()}", "PLAIN", "LOGIN"]
    cram = sasl.start(f"CRAM-{name.upper()}")
    assert isinstance(cram, Cram)
    digest = hmac.new(b"pass word", cram.challenge(), name).hexdigest()
    assert cram.respond(f"dora {digest}".encode()).ok
    assert Plain(secrets).respond(b"\0dora\0pass word").ok
    assert not Plain(secrets).respond(b"\0dora\0pass-word").ok
    assert sasl.start("CRAM-MD5") is None  # no md5 secret for it
