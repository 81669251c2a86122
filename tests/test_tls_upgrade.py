"""The upgrade of a live asyncio connection: no plaintext survives the handshake.

The client writes ``STARTTLS`` and an injected command in one packet, so both sit in the
server's StreamReader before the server upgrades.  Through our upgrade the first line
read under TLS is what the client sent under TLS; through asyncio's own
``StreamWriter.start_tls`` it would be the injected plaintext (the second test shows the
scenario really puts it there, so the first cannot pass by accident).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from emailrelay.tls.upgrade import TlsHandshakeError, start_tls
from tests.support.certs import Pki

Upgrade = Callable[[asyncio.StreamReader, asyncio.StreamWriter, ssl.SSLContext],
                   Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def ours(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               context: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    upgraded = await start_tls(writer, context, peer="test", server_side=True, timeout=10)
    return upgraded.reader, upgraded.writer


async def asyncios(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   context: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    await writer.start_tls(context)
    return reader, writer


async def first_line_under_tls(pki: Pki, upgrade: Upgrade) -> bytes:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.issue().configure_cert(server_context)
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\r\n"
        await asyncio.sleep(0.2)  # everything the client sent is in the reader by now
        writer.write(b"220 go ahead\r\n")
        reader, writer = await upgrade(reader, writer, server_context)
        seen.set_result(await reader.readline())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
    assert await reader.readline() == b"220 go ahead\r\n"
    await writer.start_tls(pki.client_context(), server_hostname="localhost")
    writer.write(b"EHLO under-tls\r\n")
    try:
        return await asyncio.wait_for(seen, 10)
    finally:
        writer.close()
        server.close()


def test_our_upgrade_drops_plaintext_buffered_before_the_handshake(tmp_path: Path) -> None:
    assert asyncio.run(first_line_under_tls(Pki(tmp_path), ours)) == b"EHLO under-tls\r\n"


def test_asyncios_own_upgrade_would_keep_it(tmp_path: Path) -> None:
    line = asyncio.run(first_line_under_tls(Pki(tmp_path), asyncios))
    assert line == b"MAIL FROM:<injected@example.com>\r\n"


async def failed_handshake(pki: Pki, client_context: ssl.SSLContext | None,
                           timeout: float = 10) -> str:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    pki.issue().configure_cert(server_context)
    error: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await start_tls(writer, server_context, peer="127.0.0.1:1", server_side=True,
                            timeout=timeout)
            error.set_result("")
        except TlsHandshakeError as e:
            error.set_result(str(e))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if client_context is None:
        writer.write(b"EHLO plaintext\r\n")  # not a ClientHello
    else:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await writer.start_tls(client_context, server_hostname="localhost")
    try:
        return await asyncio.wait_for(error, 10)
    finally:
        writer.close()
        server.close()


def test_handshake_failures_say_why(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    assert asyncio.run(failed_handshake(pki, None)) == (
        "tls handshake with 127.0.0.1:1 failed: wrong version number")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert "failed: unsupported protocol" in asyncio.run(failed_handshake(pki, old))


def test_a_silent_peer_times_out(tmp_path: Path) -> None:
    async def silent() -> str:
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        Pki(tmp_path).issue().configure_cert(server_context)
        result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await start_tls(writer, server_context, peer="p", server_side=True,
                                timeout=0.3)
            except TlsHandshakeError as e:
                result.set_result(str(e))

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1",
                                                  server.sockets[0].getsockname()[1])
        try:
            return await asyncio.wait_for(result, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(silent()) == "tls handshake with p failed: timeout after 0.3s"
