"""The forwarding client's logins: accounts by selector, mechanism choice, the responses
each mechanism sends, and OAuth2 tokens from a fake endpoint over HTTPS."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
from pathlib import Path

import pytest

from emailrelay.auth import hashstate, oauth
from emailrelay.auth.client import (
    ClientAuth,
    SaslClient,
    SelectorError,
    mechanisms_for,
    parse_inline_account,
)
from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.auth.oauth import TokenError, TokenSource
from emailrelay.auth.secrets import parse_secrets
from emailrelay.smtp import client as c
from tests.support.authpeers import TokenEndpoint

MD5_SECRET = base64.b64encode(hashstate.make_secret(b"password123")).decode()
SECRETS = parse_secrets(
    "client plain bob password123\n"
    "client plain alice e+3Dmc2 use_alice\n"
    f"client md5 carol {MD5_SECRET} hashed\n"
    f"client oauth dave {base64.b64encode(b'user=dave^Aauth=Bearer t^A^A').decode()} static\n"
    "client plain:b = = noauth\n", "secrets")[0]
SERVER_ALL = ["CRAM-SHA256", "CRAM-MD5", "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]


def login(selector: str, config: str = "", token: str = "") -> SaslClient:
    auth = ClientAuth(lambda: SECRETS, MechanismConfig.parse(config, bare_list=True))
    account = auth.account(selector)
    assert account is not None
    return SaslClient(account, auth.config, token)


def test_mechanisms_follow_the_secret_types() -> None:
    assert mechanisms_for({"plain"}) == ["CRAM-SHA512", "CRAM-SHA256", "CRAM-SHA1",
                                         "CRAM-MD5", "PLAIN", "LOGIN"]
    assert mechanisms_for({"md5"}) == ["CRAM-MD5"]
    assert mechanisms_for({"sha256", "md5"}) == ["CRAM-SHA256", "CRAM-MD5"]
    assert mechanisms_for({"oauth"}) == ["XOAUTH2"]
    assert mechanisms_for({"oauth2", "plain"})[4:] == ["XOAUTH2", "OAUTHBEARER", "PLAIN",
                                                       "LOGIN"]


def test_accounts_by_selector() -> None:
    auth = ClientAuth(lambda: SECRETS)
    assert auth.account("")["plain"].id == "bob"  # type: ignore[index]
    assert auth.account("use_alice")["plain"].id == "alice"  # type: ignore[index]
    assert auth.account("noauth") is None
    with pytest.raises(SelectorError, match=r"\[nobody\]"):
        auth.account("nobody")
    empty = ClientAuth(lambda: parse_secrets("client plain x y sel\n", "s")[0])
    assert empty.account("") is None  # no default account: send without logging in


def test_choice_by_server_offer_and_config() -> None:
    assert login("").choose(SERVER_ALL, False) == "CRAM-SHA256"
    assert login("").choose(["PLAIN", "LOGIN"], False) == "PLAIN"
    assert login("", "plain").choose(SERVER_ALL, False) == "PLAIN"
    assert login("", "m:login,plain").choose(SERVER_ALL, False) == "PLAIN"  # our order
    assert login("", "x:cram-sha256,cram-md5").choose(SERVER_ALL, False) == "PLAIN"
    assert login("", "m:;a:login").choose(SERVER_ALL, False) is None
    assert login("", "m:;a:login").choose(SERVER_ALL, True) == "LOGIN"
    assert login("hashed").choose(SERVER_ALL, False) == "CRAM-MD5"
    assert login("hashed").choose(["PLAIN"], False) is None
    assert login("static").choose(SERVER_ALL, False) == "XOAUTH2"


def test_responses() -> None:
    bob = login("")
    assert bob.initial("PLAIN") == base64.b64encode(b"\0bob\0password123").decode()
    assert bob.initial("LOGIN") == base64.b64encode(b"bob").decode()
    assert bob.respond("LOGIN", b"Password:") == base64.b64encode(b"password123").decode()
    assert bob.respond("LOGIN", b"Password:") == "*"  # a third prompt: cancel
    assert bob.initial("CRAM-MD5") is None
    bob.initial("CRAM-MD5")
    assert bob.respond("LOGIN", b"User Name\0") == base64.b64encode(b"bob").decode()
    assert bob.respond("LOGIN", b"Password\0") == base64.b64encode(b"password123").decode()
    assert bob.initial("CRAM-MD5") is None
    answer = base64.b64decode(bob.respond("CRAM-SHA256", b"<1.2@x>")).decode()
    assert answer == "bob " + hmac.new(b"password123", b"<1.2@x>", "sha256").hexdigest()
    assert bob.user == "bob"
    carol = login("hashed")
    answer = base64.b64decode(carol.respond("CRAM-MD5", b"<3@y>")).decode()
    assert answer == "carol " + hmac.new(b"password123", b"<3@y>", "md5").hexdigest()
    assert carol.respond("CRAM-SHA1", b"<3@y>") == "*"  # no usable secret
    dave = login("static")
    assert base64.b64decode(dave.initial("XOAUTH2") or "") == b"user=dave^Aauth=Bearer t^A^A"
    assert dave.respond("XOAUTH2", b'{"status":"401"}') == ""  # the error report


def test_oauth2_responses_from_an_access_token() -> None:
    secrets = parse_secrets("client oauth2 erin@example.com acct.json\n", "s")[0]
    account = ClientAuth(lambda: secrets).account("")
    assert account is not None
    erin = SaslClient(account, MechanismConfig(), "tok")
    assert base64.b64decode(erin.initial("XOAUTH2") or "") == (
        b"user=erin@example.com\x01auth=Bearer tok\x01\x01")
    assert base64.b64decode(erin.initial("OAUTHBEARER") or "") == (
        b"n,a=erin@example.com,\x01auth=Bearer tok\x01\x01")
    assert erin.respond("OAUTHBEARER", b'{"status":"invalid_token"}') == "AQ=="  # ^A
    big = SaslClient(account, MechanismConfig(), "t" * 2000)
    assert big.initial("XOAUTH2") is None  # too long for the AUTH line: sent after 334
    assert base64.b64decode(big.respond("XOAUTH2", b"")).startswith(b"user=erin@")


def test_inline_account() -> None:
    assert parse_inline_account("plain:Ym9i:cGFzc3dvcmQxMjM=") == ("bob", b"password123")
    for bad in ("plain:Ym9i", "plain::cGFzcw==", "plain:Ym9i:***", "plain:"):
        with pytest.raises(ValueError):
            parse_inline_account(bad)


def test_client_core_tries_the_next_mechanism_after_a_rejection() -> None:
    p = c.ClientProtocol(c.ClientConfig(ehlo_name="me", authenticator=login("")))
    sent: list[str] = []

    def feed(text: str) -> None:
        p.receive_data(text.encode())
        while (ev := p.next_event()) is not c.NEED_DATA:
            if isinstance(ev, c.Send):
                sent.extend(ev.lines)

    feed("220 hi\r\n250-me\r\n250 AUTH PLAIN LOGIN\r\n")
    assert sent[-1].startswith("AUTH PLAIN ")
    feed("535 no\r\n")
    assert sent[-1].startswith("AUTH LOGIN ")
    feed("334 UGFzc3dvcmQ6\r\n235 ok\r\n")
    assert p.authenticated


# -- OAuth2 tokens ----------------------------------------------------------------------------

@pytest.fixture
def endpoint() -> TokenEndpoint:
    server = TokenEndpoint().start()
    yield server
    server.stop()


def test_tokens_are_cached_and_refreshed_before_expiry(tmp_path: Path,
                                                       endpoint: TokenEndpoint) -> None:
    source = TokenSource(endpoint.account_file(tmp_path))

    async def go() -> list[str]:
        first = await source.access_token()
        second = await source.access_token()  # cached
        return [first, second]

    assert asyncio.run(go()) == ["access-1", "access-1"]
    assert endpoint.requests[0]["scope"].startswith("https://outlook.office.com/")
    endpoint.expires_in = 2  # refreshed when half the life is left
    source._refresh_at = 0  # as if the first token were old
    assert asyncio.run(source.access_token()) == "access-2"
    time.sleep(1.1)
    assert asyncio.run(source.access_token()) == "access-3"
    assert len(endpoint.requests) == 3


def test_parallel_connections_share_one_refresh(tmp_path: Path,
                                                endpoint: TokenEndpoint) -> None:
    source = TokenSource(endpoint.account_file(tmp_path))

    async def go() -> list[str]:
        return await asyncio.gather(*(source.access_token() for _ in range(5)))

    assert asyncio.run(go()) == ["access-1"] * 5 and len(endpoint.requests) == 1


def test_rotated_refresh_tokens_are_saved(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    endpoint.rotate = True
    path = endpoint.account_file(tmp_path)
    source = TokenSource(path)
    asyncio.run(source.access_token())
    saved = json.loads(path.read_text())
    assert saved["refresh_token"] == "refresh-2" and saved["client_id"] == "relay-client"
    assert path.stat().st_mode & 0o777 == 0o600
    source._refresh_at = 0
    assert asyncio.run(source.access_token()) == "access-2"  # the old one would fail now
    fresh = TokenSource(path)  # after a restart
    assert asyncio.run(fresh.access_token()) == "access-3"


def test_refusals_and_bad_files(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    source = TokenSource(endpoint.account_file(tmp_path, refresh_token="stale"))
    with pytest.raises(TokenError, match="invalid_grant: AADSTS70000"):
        asyncio.run(source.access_token())
    path = tmp_path / "bad.json"
    for text, message in [("{", "not valid JSON"), ("[]", "JSON object"),
                          ('{"client_id": "x", "refresh_token": "r"}', "token_endpoint"),
                          ('{"token_endpoint": "http://x/", "client_id": "x", '
                           '"refresh_token": "r"}', "https://")]:
        path.write_text(text)
        with pytest.raises(TokenError, match=message):
            TokenSource(path)
    with pytest.raises(TokenError, match="cannot read"):
        TokenSource(tmp_path / "missing.json")


def test_an_untrusted_endpoint_certificate_is_refused(tmp_path: Path,
                                                      endpoint: TokenEndpoint) -> None:
    path = endpoint.account_file(tmp_path)
    data = json.loads(path.read_text())
    del data["ca_file"]
    path.write_text(json.dumps(data))
    with pytest.raises(TokenError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        asyncio.run(TokenSource(path).access_token())


def test_client_auth_fetches_the_token_for_the_login(tmp_path: Path,
                                                     endpoint: TokenEndpoint) -> None:
    endpoint.account_file(tmp_path)
    secrets_path = tmp_path / "secrets"
    secrets_path.write_text("client oauth2 erin@example.com account.json\n")
    secrets = parse_secrets(secrets_path.read_text(), str(secrets_path))[0]
    auth = ClientAuth(lambda: secrets, base=tmp_path)
    auth.check()
    sasl = asyncio.run(auth.login(""))
    assert sasl is not None and sasl.access_token == "access-1"
    assert sasl.choose(SERVER_ALL, False) == "XOAUTH2"
    assert oauth.EARLY_REFRESH >= 60
