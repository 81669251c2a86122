"""The forwarding client logging in: to aiosmtpd (a server nobody here wrote) and to our
own server, accounts by selector, rejected logins, and OAuth2 with a token endpoint."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.authpeers import AuthServer, TokenEndpoint
from tests.support.relay import Relay
from tests.support.spooling import as_client, spool_message, spool_state


def secrets(tmp_path: Path, text: str) -> str:
    path = tmp_path / "client.auth"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_plain_login_and_the_auth_parameter(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    spool_message(spool, auth_out="other+2Buser")
    spool_message(spool, auth_out="<>")
    with AuthServer(passwords={"bob": "password123"}) as server:
        done = as_client(server.address, spool, "--client-auth",
                         secrets(tmp_path, "client plain bob password123\n"))
        assert done.returncode == 0, done.stderr
        assert len(server.handler.messages) == 3
        assert set(server.handler.logins) == {("PLAIN", "bob")}  # a login per connection
        assert sorted(server.handler.auth_params) == ["<>", "BOB", "OTHER+2BUSER"]
    assert spool_state(spool) == {}


def test_inline_account_login_mechanism_and_anonymous(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with AuthServer(passwords={"bob": "password123"}) as server:
        done = as_client(server.address, spool, "--client-auth",
                         "plain:Ym9i:cGFzc3dvcmQxMjM=", "--client-auth-config", "login",
                         "--anonymous=client")
        assert done.returncode == 0, done.stderr
        assert server.handler.logins == [("LOGIN", "bob")]
        assert server.handler.auth_params == ["<>"]


def test_a_rejected_login_keeps_the_messages_for_later(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first, second = spool_message(spool), spool_message(spool)
    with AuthServer(passwords={"bob": "other"}) as server:
        done = as_client(server.address, spool, "--client-auth",
                         secrets(tmp_path, "client plain bob password123\n"))
        assert done.returncode == 1
        assert server.handler.failures == ["PLAIN", "LOGIN"]  # the next one is tried
        assert not server.handler.messages
    assert "authentication failed using mechanism [plain]" in done.stderr
    assert "authentication failed using mechanism [login]" in done.stderr
    assert spool_state(spool) == {first: "ready", second: "ready"}  # never .bad
    envelope = parse((spool / f"{first}.envelope").read_bytes())
    assert envelope.retry_count == 0  # a connection failure: the message is not to blame
    with AuthServer(passwords={"bob": "password123"}) as server:
        assert as_client(server.address, spool, "--client-auth",
                         secrets(tmp_path, "client plain bob password123\n")).returncode == 0
        assert len(server.handler.messages) == 2


def test_accounts_by_selector_against_our_own_server(start_relay, tmp_path: Path) -> None:
    server_secrets = tmp_path / "server.auth"
    server_secrets.write_text("server plain bob password123\nserver plain alice e+3Dmc2\n")
    server: Relay = start_relay("--server-auth", str(server_secrets))
    spool = tmp_path / "out"
    default = spool_message(spool)
    as_alice = spool_message(spool, selector="use_alice")
    unknown = spool_message(spool, selector="nobody")
    done = as_client(f"127.0.0.1:{server.port}", spool, "--client-auth", secrets(
        tmp_path, "client plain bob password123\nclient plain alice e+3Dmc2 use_alice\n"))
    assert done.returncode == 0, done.stderr  # (failing a message is an outcome too)
    assert spool_state(spool) == {unknown: "bad"}
    reason = (spool / f"{unknown}.envelope.bad").read_text()
    assert "no client account in the secrets file for the selector [nobody]" in reason
    stored = sorted((parse(p.read_bytes()) for p in server.envelopes()),
                    key=lambda e: e.authentication)
    assert [(e.authentication, e.mail_from_auth_in) for e in stored] == [
        ("alice", "alice"), ("bob", "bob")]
    log = server.log()
    assert "mechanism [cram-sha512] and user [bob]" in log  # the strongest both can do
    assert default and as_alice


@pytest.fixture
def endpoint() -> TokenEndpoint:
    server = TokenEndpoint().start()
    yield server
    server.stop()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_oauth2_with_tokens_from_the_endpoint(tmp_path: Path, endpoint: TokenEndpoint,
                                              mechanism: str) -> None:
    endpoint.account_file(tmp_path)
    spool = tmp_path / "spool"
    spool_message(spool)
    with AuthServer(tokens={"access-1"}) as server:
        done = as_client(server.address, spool, "--client-auth",
                         secrets(tmp_path, "client oauth2 erin@example.com account.json\n"),
                         "--client-auth-config", mechanism.lower())
        assert done.returncode == 0, done.stderr
        assert server.handler.logins == [(mechanism, "erin@example.com")]
        assert server.handler.auth_params == ["ERIN@EXAMPLE.COM"]
    assert endpoint.requests[0]["client_secret"] == "s3cret"


def test_rotated_refresh_tokens_keep_working_across_restarts(tmp_path: Path,
                                                             endpoint: TokenEndpoint) -> None:
    endpoint.rotate = True
    account = endpoint.account_file(tmp_path)
    auth = secrets(tmp_path, "client oauth2 erin@example.com account.json\n")
    spool = tmp_path / "spool"
    with AuthServer(tokens={"access-1", "access-2"}) as server:
        for _ in range(2):
            spool_message(spool)
            done = as_client(server.address, spool, "--client-auth", auth)
            assert done.returncode == 0, done.stderr
        assert len(server.handler.messages) == 2
    assert json.loads(account.read_text())["refresh_token"] == "refresh-3"
    assert [r["refresh_token"] for r in endpoint.requests] == ["refresh-1", "refresh-2"]


def test_a_refused_refresh_token_keeps_the_message(tmp_path: Path,
                                                   endpoint: TokenEndpoint) -> None:
    endpoint.account_file(tmp_path, refresh_token="revoked")
    spool = tmp_path / "spool"
    message = spool_message(spool)
    with AuthServer(tokens={"access-1"}) as server:
        done = as_client(server.address, spool, "--client-auth",
                         secrets(tmp_path, "client oauth2 erin@example.com account.json\n"))
        assert done.returncode == 1 and not server.handler.messages
    assert "refused the refresh token: invalid_grant" in done.stderr
    assert spool_state(spool) == {message: "ready"}


def test_a_missing_oauth2_account_file_stops_start_up(tmp_path: Path) -> None:
    done = as_client("127.0.0.1:9", tmp_path / "spool", "--client-auth",
                     secrets(tmp_path, "client oauth2 erin@example.com missing.json\n"))
    assert done.returncode == 1
    assert "cannot read oauth2 account file" in done.stderr and "line 1" in done.stderr


def test_e_mailrelay_oauth_secret_sent_as_it_is(tmp_path: Path) -> None:
    response = b"user=dave@example.com\x01auth=Bearer static-token\x01\x01"
    spool = tmp_path / "spool"
    spool_message(spool)
    line = f"client oauth dave@example.com {base64.b64encode(response).decode()}\n"
    with AuthServer(tokens={"static-token"}) as server:
        done = as_client(server.address, spool, "--client-auth", secrets(tmp_path, line))
        assert done.returncode == 0, done.stderr
        assert server.handler.logins == [("XOAUTH2", "dave@example.com")]
