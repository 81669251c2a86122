"""A small HTTP endpoint: ``/metrics`` for Prometheus and ``/health`` for health checks.

HTTP parsing is h11's; this is only the asyncio adapter around it.  Each connection
carries one request (``Connection: close``), which Prometheus and curl handle fine.  It
answers GET and HEAD only, gives each client a few seconds to send its request, and
serves a handful of clients at once; anything else is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
from prometheus_client import CONTENT_TYPE_LATEST

from emailrelay import __version__

log = logging.getLogger("emailrelay")

REQUEST_TIMEOUT = 10.0  # seconds to receive a request
MAX_CLIENTS = 16
READ_SIZE = 8192


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Awaitable[Reply]]


def json_reply(status: int, document: dict[str, Any]) -> Reply:
    body = json.dumps(document, indent=2, sort_keys=False).encode() + b"\n"
    return Reply(status, "application/json", body)


def metrics_reply(exposition: bytes) -> Reply:
    return Reply(200, CONTENT_TYPE_LATEST, exposition)


class HttpEndpoint:
    def __init__(self, sock: socket.socket, routes: dict[str, Route]) -> None:
        self.sock = sock
        self.routes = routes
        self.server: asyncio.base_events.Server | None = None
        self._clients = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, sock=self.sock)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        connection = h11.Connection(h11.SERVER)
        try:
            try:
                request = await asyncio.wait_for(_read_request(connection, reader),
                                                 REQUEST_TIMEOUT)
            except h11.RemoteProtocolError:
                await _send(connection, writer, Reply(400, "text/plain", b"bad request\n"))
                return
            except (TimeoutError, ConnectionError):
                return
            if request is None:
                return
            reply = await self._answer(request)
            await _send(connection, writer, reply, head=request.method == b"HEAD")
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self._clients -= 1
            writer.close()

    async def _answer(self, request: h11.Request) -> Reply:
        if request.method not in (b"GET", b"HEAD"):
            return Reply(405, "text/plain", b"only GET and HEAD\n")
        path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
        route = self.routes.get(path)
        if route is None:
            known = "\n".join(sorted(self.routes))
            return Reply(404, "text/plain", f"not found; try:\n{known}\n".encode())
        try:
            return await route()
        except Exception as e:  # a broken page must not take the endpoint down
            log.error("http %s: %s", path, e)
            return Reply(500, "text/plain", b"internal error\n")


async def _read_request(connection: h11.Connection,
                        reader: asyncio.StreamReader) -> h11.Request | None:
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, *,
                head: bool = False) -> None:
    headers = [("Content-Type", reply.content_type),
               ("Content-Length", str(len(reply.body))),
               ("Connection", "close"),
               ("Server", f"emailrelay/{__version__}")]
    if reply.status == 405:
        headers.append(("Allow", "GET, HEAD"))
    data = connection.send(h11.Response(status_code=reply.status, headers=headers)) or b""
    if not head:
        data += connection.send(h11.Data(data=reply.body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()
