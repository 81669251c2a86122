"""``--client-auth``: the accounts the forwarding client logs in with, as E-MailRelay 2.6.

An account is the ``client`` lines of the secrets file that share a selector (the
fifth field, matched against the envelope's ``ClientAccountSelector``; none for the
default account), or the ``plain:<base64-user>:<base64-password>`` option value.  Its
secrets decide the mechanisms, in E-MailRelay's order of preference:

* a ``plain`` secret: CRAM-SHA512, CRAM-SHA256, CRAM-SHA1, CRAM-MD5, then (after any
  OAuth mechanism) PLAIN and LOGIN;
* hashed secrets (``md5``, ``sha1``, ``sha256`` from emailrelay-passwd): their CRAM;
* an ``oauth`` secret (the XOAUTH2 response, base64): XOAUTH2;
* an ``oauth2`` account file (see :mod:`emailrelay.auth.oauth`): XOAUTH2 and OAUTHBEARER
  with an access token the relay keeps fresh.

``--client-auth-config`` filters that list; the first one the server offers is used,
and after a rejection the next (a rejection of them all fails the connection, and the
messages wait for the next attempt).  :class:`SaslClient` fills the SMTP client core's
authenticator slot for one connection.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from pathlib import Path

from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.auth.oauth import TokenError, TokenSource, TokenSources
from emailrelay.auth.sasl import cram_digest, cram_mechanisms
from emailrelay.auth.secrets import (
    CLIENT,
    OAUTH,
    OAUTH2,
    PLAIN,
    Secret,
    Secrets,
    SecretsFile,
    load_secrets_file,
)
from emailrelay.options.parser import Settings
from emailrelay.process.daemon import StartupError

log = logging.getLogger("emailrelay.auth")

INLINE_PREFIX = "plain:"
# As E-MailRelay: an initial response only when "AUTH <mechanism> <data>" stays short.
INITIAL_RESPONSE_LIMIT = 450
OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")


class SelectorError(Exception):
    """A message names a client account that the secrets do not have."""


def parse_inline_account(text: str) -> tuple[str, bytes]:
    """``plain:<base64-user>:<base64-password>`` as (user, password)."""
    user_b64, colon, password_b64 = text.removeprefix(INLINE_PREFIX).partition(":")
    try:
        user = base64.b64decode(user_b64, validate=True)
        password = base64.b64decode(password_b64, validate=True)
    except (binascii.Error, ValueError):
        user = password = b""
    if not colon or not user or not password:
        raise ValueError("use plain:<base64-user-name>:<base64-password>")
    return user.decode("utf-8", "surrogateescape"), password


def mechanisms_for(types: set[str]) -> list[str]:
    """What an account's secret types allow, in order of preference."""
    crams = cram_mechanisms(types)
    oauth = ["XOAUTH2"] if OAUTH in types else []
    if OAUTH2 in types:
        oauth = list(OAUTH_MECHANISMS)
    return [*crams, *oauth, *(["PLAIN", "LOGIN"] if PLAIN in types else [])]


class SaslClient:
    """One connection's login: the :class:`~emailrelay.smtp.client.ClientAuthenticator`."""

    def __init__(self, account: dict[str, Secret], config: MechanismConfig,
                 access_token: str = "") -> None:
        self.account = account  # secret type -> secret
        self.config = config
        self.access_token = access_token
        self.user = ""
        self._sent = False  # the OAuth response has gone: a 334 now carries an error
        self._login_step = 0  # LOGIN: the user name first, then the password

    def mechanisms(self, secure: bool) -> list[str]:
        return self.config.apply(mechanisms_for(set(self.account)), secure)

    def choose(self, offered: list[str], secure: bool) -> str | None:
        usable = [m for m in self.mechanisms(secure) if m in offered]
        return usable[0] if usable else None

    def initial(self, mechanism: str) -> str | None:
        self._sent, self._login_step = False, 0
        if mechanism.startswith("CRAM-"):
            return None
        data = self._response(mechanism, b"")
        if data is None or len(data) > INITIAL_RESPONSE_LIMIT:
            self._sent, self._login_step = False, 0
            return None
        return base64.b64encode(data).decode("ascii") or "="

    def respond(self, mechanism: str, challenge: bytes) -> str:
        data = self._response(mechanism, challenge)
        return "*" if data is None else base64.b64encode(data).decode("ascii")

    def _response(self, mechanism: str, challenge: bytes) -> bytes | None:
        """The decoded response to a challenge, or None to cancel."""
        plain = self.account.get(PLAIN)
        if mechanism.startswith("CRAM-"):
            return self._cram(mechanism[len("CRAM-"):].lower(), challenge)
        if mechanism in OAUTH_MECHANISMS:
            return self._oauth(mechanism, challenge)
        if plain is None:
            return None
        self.user = plain.id
        user = plain.id.encode("utf-8", "surrogateescape")
        if mechanism == "PLAIN":
            return b"\0" + user + b"\0" + plain.value
        if mechanism == "LOGIN":
            # By position, not by prompt: servers word them differently ("Username:",
            # "User Name", ...), and the user name may have gone as the initial response.
            self._login_step += 1
            return {1: user, 2: plain.value}.get(self._login_step)
        return None

    def _cram(self, hash_name: str, challenge: bytes) -> bytes | None:
        found = cram_digest(hash_name, challenge, self.account.get(hash_name),
                            self.account.get(PLAIN))
        if found is None:
            return None
        secret, digest = found
        self.user = secret.id
        return f"{self.user} {digest.hex()}".encode("utf-8", "surrogateescape")

    def _oauth(self, mechanism: str, challenge: bytes) -> bytes | None:
        if self._sent:  # the server's error report: answer it so that it says 535
            return b"" if mechanism == "XOAUTH2" else b"\x01"
        self._sent = True
        refreshable, static = self.account.get(OAUTH2), self.account.get(OAUTH)
        if refreshable is not None and self.access_token:
            self.user = refreshable.id
            bearer = f"auth=Bearer {self.access_token}\x01\x01"
            if mechanism == "XOAUTH2":
                return f"user={self.user}\x01{bearer}".encode()
            name = self.user.replace("=", "=3D").replace(",", "=2C")
            return f"n,a={name},\x01{bearer}".encode()
        if static is not None and mechanism == "XOAUTH2":
            self.user = static.id
            return static.value  # E-MailRelay's oauth secret is the whole response
        return None


class ClientAuth:
    """The client accounts of one instance (``--client-auth`` and ``--client-auth-config``)."""

    def __init__(self, secrets: Callable[[], Secrets], config: MechanismConfig | None = None,
                 base: Path | None = None, secrets_file: SecretsFile | None = None) -> None:
        self._secrets = secrets
        self.config = config or MechanismConfig()
        self.base = base or Path(".")  # where relative oauth2 account files are
        self.secrets_file = secrets_file
        self.tokens = TokenSources()

    def account(self, selector: str) -> dict[str, Secret] | None:
        """The secrets of the selector's account; None: send without logging in."""
        secrets = self._secrets()
        account = {t: secrets.client[(t, selector)] for t in secrets.client_types(selector)}
        if account or selector == "" or secrets.is_noauth(selector):
            return account or None
        raise SelectorError(f"no client account in the secrets file for the selector "
                            f"[{selector}]")

    def token_source(self, secret: Secret) -> TokenSource:
        path = Path(secret.value.decode("utf-8", "surrogateescape"))
        return self.tokens.get(path if path.is_absolute() else self.base / path)

    def check(self) -> None:
        """At start-up: every oauth2 account file must be readable (else StartupError)."""
        for secret in self._secrets().client.values():
            if secret.type == OAUTH2:
                try:
                    self.token_source(secret)
                except TokenError as e:
                    raise StartupError(f"{e} (client secrets line {secret.line})") from None

    async def login(self, selector: str) -> SaslClient | None:
        """The authenticator for a new connection; raises :class:`SelectorError` or
        :class:`TokenError` (no connection should be made then)."""
        account = self.account(selector)
        if account is None:
            return None
        token = ""
        refreshable = account.get(OAUTH2)
        if refreshable is not None:
            token = await self.token_source(refreshable).access_token()
        return SaslClient(account, self.config, token)


def client_auth(settings: Settings) -> ClientAuth | None:
    """The instance's ``--client-auth`` (None without it)."""
    value = settings.value("client-auth")
    if not value:
        return None
    config = MechanismConfig.parse(settings.value("client-auth-config") or "", bare_list=True)
    if value.startswith(INLINE_PREFIX):
        user, password = parse_inline_account(value)
        inline = Secrets("--client-auth")
        inline.client[(PLAIN, "")] = Secret(CLIENT, PLAIN, user, password)
        return ClientAuth(lambda: inline, config)
    secrets = load_secrets_file(value)
    if not secrets.current().client:
        log.warning("the --client-auth secrets file \"%s\" has no client lines: messages are "
                    "forwarded without logging in", value)
    auth = ClientAuth(secrets.current, config, Path(value).parent, secrets)
    auth.check()
    return auth
