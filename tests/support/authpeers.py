"""Peers for authentication tests: an aiosmtpd server that wants a login (PLAIN, LOGIN,
XOAUTH2, OAUTHBEARER) and a fake OAuth2 token endpoint over HTTPS (trustme)."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.parse
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.capture import CaptureHandler
from tests.support.relay import free_port


class _AuthParamSMTP(SMTP):
    """aiosmtpd refuses MAIL parameters it does not know, AUTH= among them (RFC 4954
    section 5 says a server offering AUTH takes it): record and drop it."""

    def _getparams(self, params):  # type: ignore[no-untyped-def]
        result = super()._getparams(params)
        if result is not None and "AUTH" in result:
            self.event_handler.auth_params.append(result.pop("AUTH"))
        return result


class _Controller(Controller):
    def factory(self) -> SMTP:
        # AUTH without TLS on purpose: TLS is another feature's; these tests are about AUTH.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return _AuthParamSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class AuthHandler(CaptureHandler):
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)  # bearer tokens accepted
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, user)
    failures: list[str] = field(default_factory=list)
    auth_params: list[str] = field(default_factory=list)

    def authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:  # type: ignore[no-untyped-def]
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if self.passwords.get(user) == password:
                self.logins.append((mechanism, user))
                return AuthResult(success=True, auth_data=user)
        self.failures.append(mechanism)
        return AuthResult(success=False, handled=False)

    def _bearer(self, mechanism: str, text: str, user_field: str) -> AuthResult:
        fields = dict(part.split("=", 1) if "=" in part else (part, "")
                      for part in text.split("\x01") if part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        if token in self.tokens:
            self.logins.append((mechanism, user_field))
            return AuthResult(success=True, auth_data=user_field)
        self.failures.append(mechanism)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        data = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        text = data.decode() if isinstance(data, bytes) else ""
        user = text.split("\x01", 1)[0].removeprefix("user=")
        return self._bearer("XOAUTH2", text, user)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        data = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        text = data.decode() if isinstance(data, bytes) else ""
        header, _, rest = text.partition("\x01")
        user = header.split("a=", 1)[1].rstrip(",") if "a=" in header else ""
        return self._bearer("OAUTHBEARER", rest, user)


class AuthServer:
    """``with AuthServer(passwords={"bob": "pw"}) as server:`` on 127.0.0.1:<server.port>."""

    def __init__(self, passwords: dict[str, str] | None = None,
                 tokens: set[str] | None = None) -> None:
        self.handler = AuthHandler(passwords=passwords or {}, tokens=tokens or set())
        self.port = free_port()
        self.controller = _Controller(
            self.handler, hostname="127.0.0.1", port=self.port, data_size_limit=0,
            auth_require_tls=False, auth_required=True, authenticator=self.handler.authenticate)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> AuthServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class TokenEndpoint:
    """An OAuth2 token endpoint over HTTPS: ``refresh_token`` grants only."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    client_id: str = "relay-client"
    client_secret: str = "s3cret"
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-1"})
    expires_in: int = 3600
    rotate: bool = False  # answer each refresh with a new refresh token
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                endpoint.requests.append(form)
                status, body = endpoint.answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/oauth2/v2.0/token"

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != (
                self.client_id) or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("refresh_token") not in self.refresh_tokens:
            return 400, {"error": "invalid_grant",
                         "error_description": "AADSTS70000: the refresh token has expired"}
        token = f"access-{len(self.issued) + 1}"
        self.issued.append(token)
        body: dict[str, object] = {"token_type": "Bearer", "access_token": token,
                                   "expires_in": self.expires_in}
        if self.rotate:
            new = f"refresh-{len(self.issued) + 1}"
            self.refresh_tokens = {new}
            body["refresh_token"] = new
        return 200, body

    def account_file(self, directory: Path, refresh_token: str = "refresh-1") -> Path:
        ca_file = directory / "token-ca.pem"
        self.ca.cert_pem.write_to_path(str(ca_file))
        path = directory / "account.json"
        path.write_text(json.dumps({
            "token_endpoint": self.url, "client_id": self.client_id,
            "client_secret": self.client_secret, "refresh_token": refresh_token,
            "scope": "https://outlook.office.com/SMTP.Send offline_access",
            "ca_file": ca_file.name}))
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
