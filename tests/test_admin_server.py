"""The admin asyncio adapter over real sockets, with a stand-in forwarding agent.

(The forwarding agent arrives with the forward branch; the adapter only needs the
small ForwardingControl interface, exercised here.)
"""

from __future__ import annotations

import asyncio

from emailrelay.admin.core import PROMPT, AdminSession
from emailrelay.admin.server import EVENT_BACKLOG, AdminServer, _send_event
from emailrelay.app.observer import EventBus
from tests.test_admin_core import FakeBackend

P = PROMPT.encode()


class SlowForwarding:
    def __init__(self, result: str = "", error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.requests: list[str] = []
        self.release = asyncio.Event()
        self.cancelled = False

    def request_forward(self, reason: str) -> None:
        self.requests.append(reason)

    async def flush(self) -> str:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.result


async def _start(backend: FakeBackend, events: EventBus | None = None):
    admin = AdminServer(backend, events or EventBus())

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await admin.serve(reader, writer, ("127.0.0.1", "1"))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer


async def _until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), 5)


def test_flush_answers_when_the_run_is_done() -> None:
    async def scenario() -> None:
        forwarding = SlowForwarding()
        backend = FakeBackend(forwarding=forwarding, ready=["emailrelay.1.2.3"])
        server, reader, writer = await _start(backend)
        writer.write(b"flush\r\nflush\r\n")
        assert await _until(reader, P) == b"error: still working\r\n" + P
        writer.write(b"forward\r\n")
        assert await _until(reader, P) == b"OK\r\n" + P
        assert forwarding.requests == ["admin"]
        forwarding.release.set()
        assert await _until(reader, P) == b"OK\r\n" + P
        writer.close()
        server.close()

    asyncio.run(scenario())


def test_flush_reports_failures() -> None:
    async def scenario() -> None:
        for forwarding, expected in (
                (SlowForwarding("2 messages not sent: connection refused"),
                 b"error: 2 messages not sent: connection refused\n"),
                (SlowForwarding(error=OSError("no route to host")),
                 b"error: no route to host\n")):
            forwarding.release.set()
            backend = FakeBackend(forwarding=forwarding, ready=["emailrelay.1.2.3"])
            server, reader, writer = await _start(backend)
            writer.write(b"flush\n")
            assert await _until(reader, P) == expected + P
            writer.close()
            server.close()

    asyncio.run(scenario())


def test_a_client_that_leaves_during_a_flush_cancels_it() -> None:
    async def scenario() -> None:
        forwarding = SlowForwarding()
        backend = FakeBackend(forwarding=forwarding, ready=["emailrelay.1.2.3"])
        server, _reader, writer = await _start(backend)
        writer.write(b"flush\n")
        await asyncio.sleep(0.2)
        writer.close()
        for _ in range(50):
            if forwarding.cancelled:
                break
            await asyncio.sleep(0.05)
        assert forwarding.cancelled
        server.close()

    asyncio.run(scenario())


def test_notify_sends_events() -> None:
    async def scenario() -> None:
        events = EventBus()
        server, reader, writer = await _start(FakeBackend(), events)
        events.publish("network", "in", "start")  # not asked for: nothing
        writer.write(b"notify\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        events.publish("server", "stored", "emailrelay.1.2.3")
        assert await _until(reader, b"  ") == b"\nEVENT: server: stored: emailrelay.1.2.3  "
        writer.write(b"pid\n")
        assert await _until(reader, P) == b"4321\n" + P
        writer.close()
        await asyncio.sleep(0.1)
        assert events._subscribers == []  # gone with the connection
        server.close()

    asyncio.run(scenario())


class _Transport:
    def __init__(self, backlog: int) -> None:
        self.backlog = backlog

    def get_write_buffer_size(self) -> int:
        return self.backlog


class _Writer:
    def __init__(self, backlog: int) -> None:
        self.transport = _Transport(backlog)
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_events_are_dropped_for_a_client_that_does_not_read() -> None:
    session = AdminSession(FakeBackend())
    session.receive_data(b"notify\n")
    reading, stuck = _Writer(0), _Writer(EVENT_BACKLOG)
    for writer in (reading, stuck):
        _send_event(session, writer, ("client", "sending", "emailrelay.1.2.3"))  # type: ignore[arg-type]
    assert reading.written == [b"\nEVENT: client: sending: emailrelay.1.2.3  "]
    assert stuck.written == []
