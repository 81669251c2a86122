"""The server and client TLS profiles of an instance: SSL contexts built from the options,
rebuilt by :meth:`reload` (SIGHUP) without touching connections already made.

Defaults are modern whatever E-MailRelay's were: TLS 1.2 or later (``--tls-config``
can change that), no compression, no renegotiation, Python's cipher selection.

Server: ``--server-tls-verify`` asks every client for a certificate signed by the given
CAs and refuses the handshake without one; without it no client certificate is asked
for (E-MailRelay asks but does not check, so it could record unchecked ones).

Client: ``--client-tls-verify`` checks the server's chain.  The name checked is
``--client-tls-verify-name`` if given (the certificate's subject CN, as E-MailRelay,
or one of its DNS names); otherwise, beyond E-MailRelay, the name or address we asked
for (``--client-tls-server-name``, else the forwarding host).  SNI carries the same name.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings

from emailrelay.logs.setup import verbose
from emailrelay.tls.config import TlsConfig
from emailrelay.tls.files import CertificateFiles, load_ca
from emailrelay.tls.upgrade import TlsHandshakeError, Upgraded, start_tls

log = logging.getLogger("emailrelay.tls")

_LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"  # what TLS 1.0 and 1.1 need with OpenSSL 3


def _apply(context: ssl.SSLContext, config: TlsConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 and TLSv1_1
        context.minimum_version = config.minimum
        context.maximum_version = config.maximum
    if config.minimum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers(_LEGACY_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | config.options


def _verifying(verify: str | None, config: TlsConfig) -> bool:
    return verify is not None and verify != "<none>" and not config.noverify


def _files(certificate: CertificateFiles | None, verify: str | None) -> list[str]:
    """The files a profile reads (the system's CA store is not ours to check)."""
    ca = [verify] if verify and verify not in ("<none>", "<default>") else []
    return [*(certificate.files() if certificate else []), *ca]


class ServerTls:
    """STARTTLS/STLS (``--server-tls``) or implicit TLS (``--server-tls-connection``)."""

    def __init__(self, certificate: CertificateFiles, verify: str | None, config: TlsConfig,
                 *, implicit: bool = False, required: bool = False, timeout: float = 0.0,
                 unit: str = "") -> None:
        self.certificate = certificate
        self.verify = verify
        self.config = config
        self.implicit = implicit
        self.required = required
        self.timeout = timeout
        self.name = "server tls certificate" + (f" of [{unit}]" if unit else "")
        self.context = self._build()

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _apply(context, self.config)
        self.certificate.load_into(context)
        if self.verify is not None and self.verify != "<none>":
            load_ca(context, self.verify)
        context.verify_mode = (ssl.CERT_REQUIRED if _verifying(self.verify, self.config)
                               else ssl.CERT_NONE)
        return context

    def reload(self) -> None:
        """New handshakes use the files as they are now; raises if they are unusable."""
        self.context = self._build()

    def files(self) -> list[str]:
        return _files(self.certificate, self.verify)

    async def accept(self, writer: asyncio.StreamWriter, peer: str) -> Upgraded:
        """The server's handshake; a failure is logged and raised."""
        try:
            return await start_tls(writer, self.context, peer=peer, server_side=True,
                                   timeout=self.timeout)
        except TlsHandshakeError as e:
            log.warning("%s", e)
            raise


class ClientTls:
    """STARTTLS (``--client-tls``) or implicit TLS (``--client-tls-connection``)."""

    def __init__(self, certificate: CertificateFiles | None, verify: str | None,
                 config: TlsConfig, *, verify_name: str | None = None,
                 server_name: str | None = None, implicit: bool = False,
                 timeout: float = 0.0, unit: str = "") -> None:
        self.certificate = certificate
        self.verify = verify
        self.verify_name = verify_name
        self.server_name = server_name
        self.config = config
        self.implicit = implicit
        self.timeout = timeout
        self.verifying = _verifying(verify, config)
        self.name = "client tls certificate" + (f" of [{unit}]" if unit else "")
        self.reload()

    def _build(self, check_hostname: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _apply(context, self.config)
        if self.certificate is not None:
            self.certificate.load_into(context)
        if self.verify is not None and self.verify != "<none>":
            load_ca(context, self.verify)
        context.check_hostname = check_hostname and self.verifying
        context.verify_mode = ssl.CERT_REQUIRED if self.verifying else ssl.CERT_NONE
        return context

    def reload(self) -> None:
        """New connections use the files as they are now; raises if they are unusable."""
        contexts = self._build(check_hostname=True), self._build(check_hostname=False)
        self._name_checking, self._plain = contexts

    def files(self) -> list[str]:
        return _files(self.certificate, self.verify)

    async def connect(self, writer: asyncio.StreamWriter, host: str | None,
                      peer: str) -> Upgraded:
        """The client's handshake with the server at ``host`` (None: a unix socket)."""
        name = self.server_name or host or None
        by_host = self.verifying and not self.verify_name and name is not None
        upgraded = await start_tls(writer, self._name_checking if by_host else self._plain,
                                   peer=peer, server_side=False, server_hostname=name,
                                   timeout=self.timeout)
        if self.verifying and self.verify_name:
            self._check_name(upgraded, peer)
        return upgraded

    def _check_name(self, upgraded: Upgraded, peer: str) -> None:
        """E-MailRelay's ``--client-tls-verify-name``: the subject's CN (or, here, a DNS
        name of the certificate) must be the given name."""
        wanted = self.verify_name or ""
        ssl_object = upgraded.writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        names = [value for rdn in (cert or {}).get("subject", ()) for key, value in rdn
                 if key == "commonName"]
        names += [value for kind, value in (cert or {}).get("subjectAltName", ())
                  if kind == "DNS"]
        ok = any(n.lower() == wanted.lower() for n in names)
        subject = upgraded.info.peer_subject
        verbose("tls: certificate-subject=[%s] required-peer-name=[%s] ok=%d", subject,
                wanted, int(ok))
        if not ok:
            upgraded.writer.close()
            raise TlsHandshakeError(peer, f"the certificate is not for [{wanted}]: subject "
                                          f"[{subject}], names [{', '.join(names)}]")
