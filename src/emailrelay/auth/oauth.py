"""OAuth2 access tokens for client logins that keep working (beyond E-MailRelay).

E-MailRelay's ``oauth`` secrets hold a token obtained elsewhere, which expires within
the hour.  An ``oauth2`` client line instead names a small JSON file holding what the
relay needs to get tokens itself, with the refresh-token grant (RFC 6749 section 6)::

    client oauth2 relay@example.com /etc/emailrelay/m365.json

    {"token_endpoint": "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token",
     "client_id": "...", "client_secret": "...", "refresh_token": "...",
     "scope": "https://outlook.office.com/SMTP.Send offline_access"}

``client_secret`` and ``scope`` are optional, and ``ca_file`` names extra trusted CA
certificates for the endpoint.  An access token is fetched when a connection needs one,
kept in memory and fetched again shortly before it expires.  When the provider sends a
new refresh token (Microsoft does on every refresh) it replaces the old one in the file,
so the login survives the old one's expiry.  The file is read again when it changes.

The HTTP exchange uses httpx, imported only when a token is needed: a relay without
``oauth2`` lines (an OpenWrt router, say) runs without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("emailrelay.auth")

REQUEST_TIMEOUT = 30.0  # seconds for the token endpoint
EARLY_REFRESH = 300.0  # seconds before expiry to fetch a new token (at most half its life)
DEFAULT_LIFETIME = 3600  # when the endpoint does not say


class TokenError(Exception):
    """No access token: the file or the token endpoint said no."""


@dataclass(frozen=True)
class OAuthAccount:
    """The contents of an ``oauth2`` account file."""

    token_endpoint: str
    client_id: str
    refresh_token: str
    client_secret: str = ""
    scope: str = ""
    ca_file: str = ""

    @classmethod
    def read(cls, path: Path) -> OAuthAccount:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise TokenError(f"cannot read oauth2 account file \"{path}\": {e.strerror}") from None
        except ValueError as e:
            raise TokenError(f"oauth2 account file \"{path}\" is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise TokenError(f"oauth2 account file \"{path}\" must hold a JSON object")
        fields = {}
        for name in ("token_endpoint", "client_id", "refresh_token", "client_secret", "scope",
                     "ca_file"):
            value = data.get(name, "")
            if not isinstance(value, str):
                raise TokenError(f"oauth2 account file \"{path}\": \"{name}\" must be a string")
            fields[name] = value.strip()
        for name in ("token_endpoint", "client_id", "refresh_token"):
            if not fields[name]:
                raise TokenError(f"oauth2 account file \"{path}\" has no \"{name}\"")
        if not fields["token_endpoint"].lower().startswith("https://"):
            raise TokenError(f"oauth2 account file \"{path}\": the token endpoint must be an "
                             "https:// address")
        if fields["ca_file"]:
            fields["ca_file"] = str(path.parent / fields["ca_file"])
        return cls(**fields)


class TokenSource:
    """Access tokens for one account file: cached, refreshed ahead of expiry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.account = OAuthAccount.read(path)
        self._stamp = self._mtime()
        self._token = ""
        self._expires = 0.0  # time.monotonic() when the token expires
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self._warned_save = False

    def _mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def _reread_if_changed(self) -> None:
        stamp = self._mtime()
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            account = OAuthAccount.read(self.path)
        except TokenError as e:
            log.error("%s: still using the previous contents", e)
            return
        log.info("re-reading oauth2 account file: %s", self.path)
        self.account, self._token = account, ""

    async def access_token(self) -> str:
        async with self._lock:  # one request at a time, however many connections wait
            self._reread_if_changed()
            if self._token and time.monotonic() < self._refresh_at:
                return self._token
            await self._refresh()
            return self._token

    async def _refresh(self) -> None:
        import httpx  # (see the module's docstring)

        a = self.account
        form = {"grant_type": "refresh_token", "refresh_token": a.refresh_token,
                "client_id": a.client_id}
        if a.client_secret:
            form["client_secret"] = a.client_secret
        if a.scope:
            form["scope"] = a.scope
        try:
            async with httpx.AsyncClient(verify=self._tls(), timeout=REQUEST_TIMEOUT) as http:
                response = await http.post(a.token_endpoint, data=form,
                                           headers={"Accept": "application/json"})
        except (httpx.HTTPError, OSError, ssl.SSLError) as e:
            raise TokenError(f"oauth2 token endpoint {a.token_endpoint}: "
                             f"{e or type(e).__name__}") from None
        body = _json(response)
        token = body.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = body.get("error") or f"http status {response.status_code}"
            detail = body.get("error_description") or ""
            raise TokenError(f"oauth2 token endpoint {a.token_endpoint} refused the refresh "
                             f"token: {error}{': ' + str(detail) if detail else ''}")
        lifetime = _seconds(body.get("expires_in"))
        now = time.monotonic()
        self._token = token
        self._expires = now + lifetime
        self._refresh_at = self._expires - min(EARLY_REFRESH, lifetime / 2)
        log.info("oauth2 access token for %s: valid for %ds", self.path, lifetime)
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != a.refresh_token:
            self.account = replace(a, refresh_token=rotated)
            self._save_refresh_token(rotated)

    def _tls(self) -> ssl.SSLContext | bool:
        if not self.account.ca_file:
            return True
        try:
            context = ssl.create_default_context()
            context.load_verify_locations(self.account.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TokenError(f"cannot load the CA file \"{self.account.ca_file}\" of oauth2 "
                             f"account file \"{self.path}\": {e}") from None
        return context

    def _save_refresh_token(self, refresh_token: str) -> None:
        """Replace the refresh token in the file (atomically, keeping it private)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            data["refresh_token"] = refresh_token
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=2)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError) as e:
            if not self._warned_save:
                self._warned_save = True
                log.warning("cannot save the new oauth2 refresh token in \"%s\": %s: it is used "
                            "until the program stops", self.path, e)
            return
        self._stamp = self._mtime()
        log.info("saved the new oauth2 refresh token in %s", self.path)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: object) -> int:
    try:
        seconds = int(str(value))
    except ValueError:
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME


class TokenSources:
    """One :class:`TokenSource` per account file, shared by every connection."""

    def __init__(self) -> None:
        self._sources: dict[Path, TokenSource] = {}

    def get(self, path: Path) -> TokenSource:
        path = path.resolve()
        source = self._sources.get(path)
        if source is None:
            source = self._sources[path] = TokenSource(path)
        return source
