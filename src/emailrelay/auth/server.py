"""``--server-auth``: the SMTP server's accounts, trusted client addresses and mechanisms.

:class:`ServerAuth` fills the SMTP core's authenticator slot
(:class:`emailrelay.smtp.server.Authenticator`).  The exchanges themselves are the
sans-I/O mechanisms of :mod:`emailrelay.auth.sasl`, shared with the POP server.
"""

from __future__ import annotations

import logging

from emailrelay.auth.mechanisms import MechanismConfig
from emailrelay.auth.sasl import Mechanism, SaslServer
from emailrelay.auth.secrets import SecretsFile, TrustRule, load_secrets_file
from emailrelay.options.parser import Settings
from emailrelay.process.daemon import StartupError

log = logging.getLogger("emailrelay.auth")

FAILURE_DELAY = 2.0  # seconds before the answer to a failed login (SMTP and POP)
PAM = ("pam:", "/pam")


class ServerAuth:
    def __init__(self, secrets: SecretsFile, domain: str,
                 config: MechanismConfig | None = None) -> None:
        self.secrets = secrets
        self.sasl = SaslServer(secrets.current, domain)
        self.config = config or MechanismConfig()

    def mechanisms(self, secure: bool) -> list[str]:
        """What to advertise, with or without TLS (``--server-auth-config``)."""
        return self.config.apply(self.sasl.mechanisms(), secure)

    def start(self, mechanism: str) -> Mechanism | None:
        return self.sasl.start(mechanism)

    def trust(self, address: str) -> TrustRule | None:
        """The ``server none`` line that lets this client send without logging in."""
        rule = self.secrets.current().trusted(address)
        if rule is not None:
            log.info("trusting [%s]: matched [%s] from line %d", address, rule.text, rule.line)
        return rule


def open_secrets(option: str, path: str) -> SecretsFile:
    """Read a server-side secrets file at start-up; PAM is refused with a clear error."""
    if path in PAM:
        raise StartupError(f"--{option}={path} is not supported: this program has no PAM "
                           "authentication; use a secrets file")
    return load_secrets_file(path)


def server_auth(settings: Settings, domain: str) -> ServerAuth | None:
    """The instance's ``--server-auth`` (None without it)."""
    path = settings.value("server-auth")
    if not path:
        return None
    secrets = open_secrets("server-auth", path)
    current = secrets.current()
    if not current.server and not current.trust:
        log.warning("the --server-auth secrets file \"%s\" has no server lines: no client can "
                    "log in or send mail", path)
    config = MechanismConfig.parse(settings.value("server-auth-config") or "")
    return ServerAuth(secrets, domain, config)
