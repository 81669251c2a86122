"""Turning a live asyncio stream connection into a TLS one.

Used for STARTTLS and STLS (after the plaintext "go ahead" reply) and for implicit TLS
(straight after connecting or accepting).  Plaintext that the peer sent before the
handshake may already sit in the old :class:`asyncio.StreamReader`'s buffer, and
:meth:`asyncio.StreamWriter.start_tls` keeps that reader: read after the upgrade, such
bytes would pass for commands sent under TLS (the STARTTLS command injection bugs).
So the upgrade runs :meth:`asyncio.loop.start_tls` with a fresh reader and protocol,
and the old reader, with whatever it holds, is dropped.

For that to be right, nothing that belongs to the handshake may reach the old reader:
a server calls :func:`hold_input` before it sends its go-ahead (so the old reader holds
only what the client sent before it could have seen the go-ahead: plaintext to drop),
and an implicit-TLS server as soon as the connection is made.  Bytes left in the
socket then go to the TLS layer, where plaintext fails the handshake, as it should.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from emailrelay.logs.setup import verbose
from emailrelay.tls.config import version_name
from emailrelay.tls.files import ssl_reason

log = logging.getLogger("emailrelay.tls")

STREAM_LIMIT = 1 << 17


class TlsHandshakeError(Exception):
    """The handshake failed (the connection is closed); ``reason`` says why."""

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"tls handshake with {peer} failed: {reason}")
        self.peer = peer
        self.reason = reason


@dataclass(frozen=True)
class TlsInfo:
    version: str  # E-MailRelay's name: TLSv1.2, TLSv1.3
    cipher: str  # OpenSSL's name, e.g. TLS_AES_256_GCM_SHA384
    peer_certificate: str = ""  # PEM of a verified peer certificate, else ""
    peer_subject: str = ""  # "/CN=..." of the peer certificate when verified


@dataclass
class Upgraded:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    info: TlsInfo


def hold_input(writer: asyncio.StreamWriter) -> None:
    """Read nothing more from the connection until :func:`start_tls` takes it over."""
    transport = writer.transport
    assert isinstance(transport, asyncio.ReadTransport)
    transport.pause_reading()


async def start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext, *, peer: str,
                    server_side: bool, server_hostname: str | None = None,
                    timeout: float = 0.0, limit: int = STREAM_LIMIT) -> Upgraded:
    """Do the handshake on ``writer``'s connection; the caller must forget its old reader
    and writer.  Raises :class:`TlsHandshakeError` (and closes the connection)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        await writer.drain()
        async with asyncio.timeout(timeout or None):
            transport = await loop.start_tls(
                writer.transport, protocol, context, server_side=server_side,
                server_hostname=server_hostname if not server_side else None,
                ssl_handshake_timeout=timeout + 5.0 if timeout else None)
    except TimeoutError:
        writer.close()
        raise TlsHandshakeError(peer, f"timeout after {timeout:g}s") from None
    except (OSError, EOFError) as e:
        writer.close()
        raise TlsHandshakeError(peer, describe(e)) from None
    protocol.connection_made(transport)  # loop.start_tls leaves this to us
    upgraded = _TlsStreamWriter(transport, protocol, reader, loop, writer)
    info = _info(transport.get_extra_info("ssl_object"), context)
    verbose("tls protocol established with %s%s%s", peer,
            f" protocol {info.version}" if info.version else "",
            f" cipher {info.cipher}" if info.cipher else "")
    return Upgraded(reader, upgraded, info)


class _TlsStreamWriter(asyncio.StreamWriter):
    """Keeps the plaintext writer alive: dropped, it would close the connection that the
    TLS transport runs on (``StreamWriter.__del__`` closes its transport)."""

    def __init__(self, transport: asyncio.BaseTransport, protocol: asyncio.StreamReaderProtocol,
                 reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop,
                 plain: asyncio.StreamWriter) -> None:
        super().__init__(transport, protocol, reader, loop)
        self.plain = plain


def _info(ssl_object: ssl.SSLObject | None, context: ssl.SSLContext) -> TlsInfo:
    if ssl_object is None:
        return TlsInfo("", "")
    cipher = ssl_object.cipher()
    pem = subject = ""
    if context.verify_mode is not ssl.CERT_NONE:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            pem = ssl.DER_cert_to_PEM_cert(der)
            subject = subject_text(ssl_object.getpeercert() or {})
    return TlsInfo(version_name(ssl_object.version()), cipher[0] if cipher else "", pem,
                   subject)


_SHORT_NAMES = {"countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
                "organizationName": "O", "organizationalUnitName": "OU", "commonName": "CN"}


def subject_text(cert: dict) -> str:
    """A certificate's subject as OpenSSL's one-line form, ``/O=Example/CN=mail``."""
    parts = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            parts.append(f"/{_SHORT_NAMES.get(key, key)}={value}")
    return "".join(parts)


def describe(error: BaseException) -> str:
    """Why a handshake failed, in words (the library's, for certificate problems)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, EOFError,
                          ConnectionResetError, BrokenPipeError)):
        return "the connection was closed during the handshake"
    if isinstance(error, ssl.SSLError):
        return ssl_reason(error)
    if isinstance(error, ConnectionAbortedError):
        return "timeout"
    return error.strerror.lower() if isinstance(error, OSError) and error.strerror else (
        str(error) or type(error).__name__)
