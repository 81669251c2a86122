"""The asyncio adapter for admin connections (``--admin``).

Moves bytes between a connection and :class:`~emailrelay.admin.core.AdminSession`, runs
``flush`` in the background while the connection stays usable, and writes ``notify``
events as they happen.  Events are dropped for a client that does not read them (its
socket buffer full), as E-MailRelay does, so a stuck client cannot use up memory.
"""

from __future__ import annotations

import asyncio
import logging

from emailrelay.admin.core import AdminBackend, AdminSession
from emailrelay.app.observer import Event, EventBus
from emailrelay.net.listen import display_peer

log = logging.getLogger("emailrelay")

READ_SIZE = 4096
EVENT_BACKLOG = 1 << 16  # bytes waiting to be sent beyond which events are dropped


class AdminServer:
    def __init__(self, backend: AdminBackend, events: EventBus, *,
                 terminate_allowed: bool = False) -> None:
        self.backend = backend
        self.events = events
        self.terminate_allowed = terminate_allowed
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    peer: tuple[str, str]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        who = display_peer(*peer)
        session = AdminSession(self.backend, terminate_allowed=self.terminate_allowed)
        unsubscribe = self.events.subscribe(lambda event: _send_event(session, writer, event))
        flushing: asyncio.Task[None] | None = None
        reason = "disconnected"
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                out = session.receive_data(data)
                writer.write(out.data)
                if out.terminate:
                    log.info("received a terminate command from %s", who)
                    self.backend.terminate()
                if out.flush:
                    flushing = asyncio.ensure_future(self._flush(session, writer))
                if out.close is not None:
                    reason = out.close
                    break
                await writer.drain()
        except ConnectionError:
            reason = "connection reset by peer"
        except asyncio.CancelledError:
            reason = "shutting down"
            raise
        finally:
            unsubscribe()
            if flushing is not None:
                flushing.cancel()
            writer.close()
            self.tasks.discard(task)
            log.info("admin connection closed: %s%s", f"{reason}: " if reason else "", who)

    async def _flush(self, session: AdminSession, writer: asyncio.StreamWriter) -> None:
        forwarding = self.backend.forwarding
        assert forwarding is not None  # the session asks for a flush only when forwarding
        try:
            error = await forwarding.flush()
        except Exception as e:  # a failed run is reported to the user, not raised
            error = str(e) or type(e).__name__
        if not writer.is_closing():
            writer.write(session.flush_done(error))

    def close_all(self) -> None:
        """At shutdown: admin connections do not wait for the grace period."""
        for task in list(self.tasks):
            task.cancel()


def _send_event(session: AdminSession, writer: asyncio.StreamWriter, event: Event) -> None:
    data = session.event(event)
    if data and not writer.is_closing() \
            and writer.transport.get_write_buffer_size() < EVENT_BACKLOG:
        writer.write(data)
