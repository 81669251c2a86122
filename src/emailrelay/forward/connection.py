"""The asyncio adapter for one connection to the smarthost.

It connects (TCP, unix-domain or through a SOCKS 4a proxy), moves bytes between the
socket and :class:`~emailrelay.smtp.client.ClientProtocol`, streams message content from
the spool file in bounded pieces, and turns socket trouble and timeouts into
:meth:`~emailrelay.smtp.client.ClientProtocol.connection_lost` calls.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from emailrelay.forward.address import ForwardAddress
from emailrelay.logs.setup import VERBOSE, verbose
from emailrelay.net.listen import display_address
from emailrelay.smtp import client as proto
from emailrelay.tls.profiles import ClientTls
from emailrelay.tls.upgrade import TlsHandshakeError

log = logging.getLogger("emailrelay.forward")

READ_SIZE = 1 << 16
CONTENT_READ_SIZE = 1 << 17


class ConnectError(Exception):
    """The smarthost could not be reached."""


@dataclass(frozen=True)
class Timeouts:
    connection: float = 40.0  # --connection-timeout
    response: float = 60.0  # --response-timeout
    prompt: float = 20.0  # --prompt-timeout: wait this long for the greeting


def client_family(interface: str | None) -> int:
    """The address family that ``--client-interface`` restricts forwarding to."""
    if not interface:
        return socket.AF_UNSPEC
    try:
        address = ipaddress.ip_address(interface.strip("[]").split("%")[0])
    except ValueError:
        return socket.AF_UNSPEC
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


async def open_stream(address: ForwardAddress, *, interface: str | None,
                      timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the smarthost; raise :class:`ConnectError` saying why not."""
    try:
        async with asyncio.timeout(timeout or None):
            if address.unix:
                return await asyncio.open_unix_connection(address.host, limit=1 << 20)
            if address.socks:
                return await _open_socks_stream(address)
            local = (interface.strip("[]"), 0) if interface else None
            return await asyncio.open_connection(
                address.host, address.port, family=client_family(interface),
                local_addr=local, limit=1 << 20)
    except TimeoutError:
        raise ConnectError(f"connection timeout after {timeout:g}s") from None
    except OSError as e:
        raise ConnectError(_describe(e)) from None


async def _open_socks_stream(address: ForwardAddress,
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """SOCKS 4a with the python-socks library: the proxy resolves the far host."""
    # Imported here: only --forward-to host:port@socks-host:port needs the library.
    from python_socks import ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.async_.asyncio import Proxy

    proxy = Proxy(ProxyType.SOCKS4, address.socks_host, address.socks_port, rdns=True)
    try:
        sock = await proxy.connect(address.host, address.port)
    except (ProxyError, ProxyTimeoutError) as e:
        raise ConnectError(f"socks connection failed: {e}") from None
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


def _describe(error: OSError) -> str:
    """"connection refused" rather than asyncio's "Connect call failed (...)"."""
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error)


def _peer_display(writer: asyncio.StreamWriter, address: ForwardAddress) -> str:
    peer = writer.get_extra_info("peername")
    if address.socks or not isinstance(peer, tuple):
        return address.display()
    return display_address(peer[0], peer[1])


class ClientConnection:
    """One SMTP client session: :meth:`start`, then :meth:`send` per message, :meth:`quit`.

    ``start_tls`` is the STARTTLS slot: a coroutine that upgrades the connection,
    replacing :attr:`reader` and :attr:`writer` (or raising
    :class:`~emailrelay.tls.upgrade.TlsHandshakeError`); without one a STARTTLS request
    ends the session.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: proto.ClientProtocol, timeouts: Timeouts, peer: str,
                 start_tls: Callable[[ClientConnection], Awaitable[None]] | None = None
                 ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.timeouts = timeouts
        self.peer = peer
        self.start_tls = start_tls
        self.ready = False
        self.error: str | None = None
        self._greeted = False

    @classmethod
    async def open(cls, address: ForwardAddress, config: proto.ClientConfig,
                   timeouts: Timeouts, interface: str | None = None,
                   tls: ClientTls | None = None) -> ClientConnection:
        reader, writer = await open_stream(address, interface=interface,
                                           timeout=timeouts.connection)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _peer_display(writer, address)
        log.info("smtp connection to %s", peer)
        host = None if address.unix else address.host
        if tls is not None and tls.implicit:
            try:
                upgraded = await tls.connect(writer, host, peer)
            except TlsHandshakeError as e:
                raise ConnectError(f"tls handshake failed: {e.reason}") from None
            reader, writer = upgraded.reader, upgraded.writer
        conn = cls(reader, writer, proto.ClientProtocol(config), timeouts, peer)
        if tls is not None and not tls.implicit:
            conn.start_tls = functools.partial(_upgrade, tls, host)
        return conn

    async def start(self) -> bool:
        """Greeting, EHLO and so on: True once ready for messages."""
        await self._pump()
        return self.ready

    async def send(self, message: proto.OutgoingMessage, content: Path) -> proto.Outcome:
        assert self.ready
        self.ready = False
        self.protocol.send_message(message)
        with open(content, "rb") as f:
            outcome = await self._pump(f)
        assert outcome is not None
        return outcome

    async def quit(self) -> None:
        """QUIT (when the session is still usable) and close the socket."""
        try:
            if self.ready:
                self.ready = False
                self.protocol.quit()
                await asyncio.wait_for(self._pump(), timeout=min(self.timeouts.response, 5.0)
                                       or None)
        except (TimeoutError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.writer.close()

    # -- the event pump ---------------------------------------------------------------------

    async def _pump(self, content: BinaryIO | None = None) -> proto.Outcome | None:
        """Run the protocol until it waits for the caller; return a message's outcome."""
        p = self.protocol
        outcome: proto.Outcome | None = None
        while True:
            event = p.next_event()
            if event is proto.NEED_DATA:
                if outcome is not None:
                    return outcome
                await self._receive()
            elif isinstance(event, proto.Send):
                await self._write_commands(event)
            elif isinstance(event, proto.SendContent):
                await self._write_content(content)
            elif isinstance(event, proto.SendChunk):
                await self._write_chunk(content, event)
            elif isinstance(event, proto.MessageDone):
                outcome = event.outcome
            elif isinstance(event, proto.SessionReady):
                self.ready = True
                return outcome
            elif isinstance(event, proto.Closed):
                self.error = event.error
                self.ready = False
                return outcome
            elif isinstance(event, proto.ProtocolWarning):
                log.warning("%s", event.text)
            elif isinstance(event, proto.StartTls):
                if self.start_tls is None:
                    p.connection_lost("tls is not available")
                    continue
                try:
                    await self.start_tls(self)
                except TlsHandshakeError as e:
                    p.connection_lost(str(e))
                else:
                    p.tls_started()

    async def _receive(self) -> None:
        p = self.protocol
        first = not self._greeted
        wait = self.timeouts.prompt if first and self.timeouts.prompt else (
            self.timeouts.response)
        try:
            async with asyncio.timeout(wait or None):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            if first and self.timeouts.prompt:
                self._greeted = True
                p.greeting_timeout(self.timeouts.prompt)
            else:
                p.connection_lost(f"response timeout after {wait:g}s")
            return
        except OSError as e:
            p.connection_lost(_describe(e))
            return
        self._greeted = True
        if data and log.isEnabledFor(VERBOSE):
            for line in data.split(b"\r\n"):
                if line:
                    verbose('rx<<: "%s"', line.decode("utf-8", "backslashreplace"))
        p.receive_data(data)

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        if not self.writer.transport.get_write_buffer_size():
            return  # all of it is with the kernel already: nothing to wait for
        try:
            async with asyncio.timeout(self.timeouts.response or None):
                await self.writer.drain()
        except TimeoutError:
            raise _WriteFailed(f"flow-control timeout after {self.timeouts.response:g}s"
                               ) from None

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except _WriteFailed as e:
            self.protocol.connection_lost(str(e))
        except OSError as e:
            self.protocol.connection_lost(_describe(e))

    async def _write_commands(self, event: proto.Send) -> None:
        if log.isEnabledFor(VERBOSE):
            for line in event.lines:
                verbose('tx>>: "%s"', "[not logged]" if event.sensitive else line)
        await self._guarded(self._write(event.to_bytes()))

    async def _write_content(self, f: BinaryIO | None) -> None:
        encoder = self.protocol.encoder
        assert encoder is not None and f is not None

        async def stream() -> None:
            # One chunk is held back so that the last goes out with the final dot: a
            # small message is one write.
            held = b""
            while chunk := f.read(CONTENT_READ_SIZE):
                if held:
                    await self._write(held)
                held = encoder.encode(chunk)
            await self._write(held + encoder.finish())
            verbose("tx>>: [%d line%s of content]", encoder.lines,
                    "" if encoder.lines == 1 else "s")
            verbose('tx>>: "."')
            self.protocol.content_sent()

        await self._guarded(stream())

    async def _write_chunk(self, f: BinaryIO | None, event: proto.SendChunk) -> None:
        assert f is not None

        async def stream() -> None:
            f.seek(event.offset)
            remaining = event.size
            while remaining:
                chunk = f.read(min(CONTENT_READ_SIZE, remaining))
                if not chunk:
                    raise _WriteFailed("content file shorter than expected")
                remaining -= len(chunk)
                await self._write(chunk)
            verbose("tx>>: [%d byte%s]", event.size, "" if event.size == 1 else "s")

        await self._guarded(stream())


class _WriteFailed(Exception):
    pass


async def _upgrade(tls: ClientTls, host: str | None, conn: ClientConnection) -> None:
    """The STARTTLS handshake; the plaintext reader is dropped with anything it holds."""
    upgraded = await tls.connect(conn.writer, host, conn.peer)
    conn.reader, conn.writer = upgraded.reader, upgraded.writer
