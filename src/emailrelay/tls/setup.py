"""An instance's TLS profiles from its options (files are read here, at start-up, as root)."""

from __future__ import annotations

from emailrelay.options.parser import Settings
from emailrelay.process.daemon import StartupError
from emailrelay.tls.config import parse_tls_config
from emailrelay.tls.files import CertificateFiles, TlsFileError
from emailrelay.tls.profiles import ClientTls, ServerTls


def _timeout(s: Settings) -> float:
    return float(s.int("connection-timeout") or 0)  # E-MailRelay's secure-connection timeout


def server_tls(s: Settings) -> ServerTls | None:
    """--server-tls or --server-tls-connection; None without either."""
    implicit = s.flag("server-tls-connection")
    if not (s.flag("server-tls") or implicit):
        return None
    try:
        return ServerTls(CertificateFiles.from_values(s.values("server-tls-certificate")),
                         s.value("server-tls-verify"), parse_tls_config(s.values("tls-config")),
                         implicit=implicit, required=s.flag("server-tls-required"),
                         timeout=_timeout(s), unit=s.name)
    except TlsFileError as e:
        raise StartupError(str(e)) from None


def client_tls(s: Settings) -> ClientTls | None:
    """--client-tls or --client-tls-connection; None without either."""
    implicit = s.flag("client-tls-connection")
    if not (s.flag("client-tls") or implicit):
        return None
    values = s.values("client-tls-certificate")
    try:
        return ClientTls(CertificateFiles.from_values(values) if values else None,
                         s.value("client-tls-verify"), parse_tls_config(s.values("tls-config")),
                         verify_name=s.value("client-tls-verify-name"),
                         server_name=s.value("client-tls-server-name"), implicit=implicit,
                         timeout=_timeout(s), unit=s.name)
    except TlsFileError as e:
        raise StartupError(str(e)) from None
