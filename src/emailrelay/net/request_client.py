"""Line-based request/response clients for ``net:`` filters and address verifiers.

A request is one line; the answer is the first line the server sends back.  The
connection is kept open for the next request.  A server that dropped an idle
connection costs nothing: the request goes out again on a fresh connection.  Requests
that arrive while every connection is busy get a connection of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass

RESPONSE_LIMIT = 1 << 16  # longest response line accepted


class RequestError(Exception):
    """The request could not be answered (network error, timeout, bad response)."""


@dataclass(frozen=True)
class Endpoint:
    """A TCP address (``host:port``) or a unix-domain socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``host:port``, ``[ipv6]:port`` or an absolute path; no SOCKS ``@`` forms.

    The port may be a service name (``spamd`` is not one; ``smtp`` is).  Raises
    :class:`ValueError` with a message fit for "invalid filter specification: ...".
    """
    if text.startswith("/") and ":" not in text:
        return Endpoint(path=text)
    host, sep, service = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not service:
        raise ValueError(f"invalid address: \"{text}\": expected host:port or a socket path")
    if service.isdigit():
        port = int(service)
    else:
        try:
            port = socket.getservbyname(service, "tcp")
        except OSError:
            raise ValueError(f"invalid address: \"{text}\": unknown port \"{service}\"") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid address: \"{text}\": port out of range")
    return Endpoint(host=host, port=port)


async def connect(endpoint: Endpoint, timeout: float | None
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection, failing with :class:`RequestError` in words a log reader gets."""
    try:
        if endpoint.path:
            opening = asyncio.open_unix_connection(endpoint.path, limit=RESPONSE_LIMIT)
        else:
            opening = asyncio.open_connection(endpoint.host, endpoint.port,
                                              limit=RESPONSE_LIMIT)
        return await asyncio.wait_for(opening, timeout or None)
    except TimeoutError:
        raise RequestError(f"cannot connect to {endpoint}: timed out after {timeout:g}s") \
            from None
    except OSError as e:
        raise RequestError(f"cannot connect to {endpoint}: {os_error_text(e)}") from None


def os_error_text(error: OSError) -> str:
    """"connection refused" rather than asyncio's "Connect call failed (...)"."""
    return (os.strerror(error.errno) if error.errno else str(error)).lower()


def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


class RequestClient:
    def __init__(self, endpoint: Endpoint, timeout: float | None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout or None
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, line: str) -> str:
        """Send ``line`` and return the response line (without its line ending)."""
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                close_quietly(writer)
                continue
            try:
                return await self._exchange(reader, writer, line)
            except _StaleConnection:
                continue  # the server had closed it while idle: try a fresh one
        reader, writer = await connect(self.endpoint, self.timeout)
        try:
            return await self._exchange(reader, writer, line)
        except _StaleConnection:
            raise RequestError(f"connection closed by {self.endpoint} without a response") \
                from None

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        line: str) -> str:
        keep = False
        try:
            writer.write(line.encode("utf-8", "surrogateescape") + b"\n")
            await asyncio.wait_for(writer.drain(), self.timeout)
            response = await asyncio.wait_for(reader.readline(), self.timeout)
            if not response.endswith(b"\n"):
                raise _StaleConnection()
            keep = True
            return response.rstrip(b"\r\n").decode("utf-8", "replace")
        except (ConnectionError, BrokenPipeError):
            raise _StaleConnection() from None
        except TimeoutError:
            raise RequestError(f"no response from {self.endpoint} after "
                               f"{self.timeout:g}s") from None
        except ValueError:  # the line limit
            raise RequestError(f"response from {self.endpoint} too long") from None
        except OSError as e:
            raise RequestError(f"{self.endpoint}: {os_error_text(e)}") from None
        finally:
            if keep:
                self._idle.append((reader, writer))
            else:
                close_quietly(writer)

    def close(self) -> None:
        for _, writer in self._idle:
            close_quietly(writer)
        self._idle.clear()


class _StaleConnection(Exception):
    """The connection ended before a complete response line."""
