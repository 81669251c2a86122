"""The asyncio adapter for one SMTP server connection.

It moves bytes between the socket and :class:`~emailrelay.smtp.server.ServerProtocol`,
streams message content into the spool and answers the protocol's requests.  Replies
produced while pipelined input is being worked through are sent in one write.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from emailrelay.logs.setup import verbose
from emailrelay.smtp import replies
from emailrelay.smtp import server as proto
from emailrelay.smtp.received import received_line
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import NewMessage, Spool
from emailrelay.util.crashpoint import crash_point
from emailrelay.util.printable import printable
from emailrelay.verify.base import Verifier, VerifierStatus, VerifyQuery

log = logging.getLogger("emailrelay.smtp")

READ_SIZE = 1 << 17

BODY_TYPES = {"": "7bit", "7BIT": "7bit", "8BITMIME": "8bit", "BINARYMIME": "binarymime"}


@dataclass
class StoredInfo:
    """What a hook learns about a message just stored."""

    message: NewMessage
    transaction: proto.Transaction
    peer_ip: str
    # Things to do once the message is published (a filter's rescan request...).
    after_publish: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class SmtpContext:
    """Everything a session needs from its instance (shared by all its sessions)."""

    spool: Spool
    committer: GroupCommitter
    make_config: Callable[[str], proto.ServerConfig]  # per peer address
    domain: str
    add_received: bool = True
    idle_timeout: float = 60.0
    # Called with the new message before it becomes visible; returns the reply text
    # for the client (the default accepts everything).  Filters plug in here.
    before_publish: Callable[[StoredInfo], Awaitable[tuple[bool, str]]] | None = None
    on_stored: Callable[[StoredInfo], None] | None = None
    # Called once the message is safely stored, before the client's reply: returns a
    # different reply, or None for the usual one (--immediate forwarding plugs in here).
    after_store: Callable[[StoredInfo], Awaitable[str | None]] | None = None
    on_disconnect: Callable[[], None] | None = None
    # --address-verifier: consulted for RCPT and VRFY (ServerConfig.verify_recipients).
    verifier: Verifier | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1


class SmtpSession:
    def __init__(self, context: SmtpContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: tuple[str, str]) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.peer_ip, self.peer_port = peer
        self.protocol = proto.ServerProtocol(context.make_config(self.peer_ip))
        self.message: NewMessage | None = None
        self._write_failed: str | None = None
        self._out: list[bytes] = []
        self._trace = log.isEnabledFor(15)
        self.protocol.config.trace = self._trace

    async def run(self) -> None:
        reason = "disconnected before QUIT"
        try:
            reason = await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "connection reset by peer"
        except TimeoutError:
            reason = f"no activity after {self.context.idle_timeout:g}s"
        finally:
            self._discard_message()
            self.writer.close()
            peer = self._peer_display()
            log.info("smtp connection closed: %s%s", f"{reason}: " if reason else "", peer)
            if self.context.on_disconnect:
                self.context.on_disconnect()

    def _peer_display(self) -> str:
        return f"{self.peer_ip}:{self.peer_port}" if self.peer_ip else "unix-domain peer"

    async def _serve(self) -> str:
        p = self.protocol
        self._queue(p.greeting())
        if not p.config.enabled:
            await self._flush()
            return "service not available"
        while True:
            event = p.next_event()
            if event is proto.NEED_DATA:
                await self._flush()
                data = await asyncio.wait_for(self.reader.read(READ_SIZE),
                                              self.context.idle_timeout or None)
                p.receive_data(data)
            elif isinstance(event, proto.Send):
                self._queue(event)
            elif isinstance(event, proto.MessageData):
                self._write_content(event.data)
            elif isinstance(event, proto.MessageStart):
                self._start_message(event.transaction)
            elif isinstance(event, proto.MessageAbort):
                self._discard_message()
            elif isinstance(event, proto.MessageComplete):
                await self._flush()
                p.message_stored(await self._store(event.transaction))
            elif isinstance(event, proto.Trace):
                verbose("%s", event.text)
            elif isinstance(event, proto.CheckRecipient):
                await self._flush()
                await self._check_recipient(event)
            elif isinstance(event, proto.VerifyRequest):
                await self._flush()
                await self._vrfy(event.address)
            elif isinstance(event, proto.ProtocolWarning):
                log.warning("%s", event.text)
            elif isinstance(event, proto.Close):
                await self._flush()
                return event.reason
            else:
                raise AssertionError(f"event not handled yet: {event!r}")

    # -- output -----------------------------------------------------------------------------

    def _queue(self, send: proto.Send) -> None:
        if self._trace:
            for line in send.lines:
                verbose('tx>>: "%s"', line)
        self._out.append(send.to_bytes())

    async def _flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            await self.writer.drain()

    # -- address verification -----------------------------------------------------------

    async def _verify(self, address: str, mail_from: str, command: str) -> VerifierStatus:
        p = self.protocol
        verifier = self.context.verifier
        assert verifier is not None, "verify_recipients needs a verifier"
        query = VerifyQuery(
            address=address, mail_from=mail_from, client=self._peer_display(),
            domain=self.context.domain, command=command,
            auth_mechanism=(p.auth_mechanism or "").lower() if p.authenticated_user is not None
            else "none", auth_name=p.authenticated_user or "")
        return await verifier.verify(query)

    async def _check_recipient(self, event: proto.CheckRecipient) -> None:
        arg = event.address
        status = await self._verify(arg.address, event.transaction.mail_from, "RCPT")
        if status.abort:
            self.protocol.recipient_checked(accepted=False, abort=True)
        elif status.valid:
            self.protocol.recipient_checked(accepted=True, address=status.address,
                                            local=status.local)
        else:
            log.warning("rejecting recipient \"%s\": %s%s", printable(arg.raw), status.response,
                        f": {status.reason}" if status.reason != status.response else "")
            self.protocol.recipient_checked(accepted=False, reply=replies.rcpt_rejected(
                arg.raw, status.response, temporary=status.temporary))

    async def _vrfy(self, address: str) -> None:
        status = await self._verify(address, "", "VRFY")
        p = self.protocol
        if status.abort:
            p.vrfy_checked(abort=True)
        elif status.valid and status.local:
            p.vrfy_checked(replies.vrfy_local(status.full_name or status.address))
        elif status.valid:
            p.vrfy_checked(replies.vrfy_remote(status.address))
        else:
            p.vrfy_checked(replies.vrfy_not_verified(status.response,
                                                     temporary=status.temporary))

    # -- messages ---------------------------------------------------------------------------

    def _start_message(self, t: proto.Transaction) -> None:
        p = self.protocol
        envelope = Envelope(
            from_=t.mail_from,
            to_local=[r.address for r in t.recipients if r.local],
            to_remote=[r.address for r in t.recipients if not r.local],
            body_type=BODY_TYPES.get(t.body, "unknown"),
            authentication=p.authenticated_user or "",
            client=self.peer_ip,
            mail_from_auth_in=t.auth_param or "",
            utf8_mailbox_names=t.utf8_mailboxes,
        )
        self._write_failed = None
        try:
            self.message = self.context.spool.new_message(envelope)
            if self.context.add_received:
                self.message.write(received_line(
                    helo=p.helo_name, peer_ip=self.peer_ip, domain=self.context.domain,
                    secure=p.secure, authenticated=p.authenticated_user is not None))
        except OSError as e:
            self._storage_error(e)

    def _write_content(self, data: bytes) -> None:
        if self.message is None:
            return
        try:
            self.message.write(data)
        except OSError as e:
            self._storage_error(e)

    def _storage_error(self, error: OSError) -> None:
        self._discard_message()
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        self._write_failed = replies.STORAGE_FULL if full else replies.TRANSACTION_FAILED
        log.error("cannot write to the spool directory \"%s\": %s", self.context.spool.directory,
                  error.strerror)

    def _discard_message(self) -> None:
        if self.message is not None:
            self.message.abort()
            self.message = None

    async def _store(self, t: proto.Transaction) -> str:
        message, self.message = self.message, None
        if message is None:
            return self._write_failed or replies.TRANSACTION_FAILED
        message.envelope.body_type = BODY_TYPES.get(t.body, "unknown")
        ctx = self.context
        started = time.monotonic()
        try:
            await message.prepare(ctx.committer)
            info = StoredInfo(message, t, self.peer_ip)
            if ctx.before_publish is not None:
                ok, reply = await ctx.before_publish(info)
                if not ok:
                    message.abort()  # (a no-op if the hook kept the message as .bad)
                    ctx.count("rejected")
                    return reply
                await message.publish(ctx.committer, resync=True)
                for callback in info.after_publish:
                    callback()
            else:
                await message.publish(ctx.committer)
        except OSError as e:
            self._storage_error(e)
            message.abort()
            return self._write_failed or replies.TRANSACTION_FAILED
        ctx.count("received")
        log.info("smtp message stored: %s from <%s> to %d recipient%s (%d bytes, %.1f ms)",
                 message.id, t.mail_from, len(t.recipients),
                 "" if len(t.recipients) == 1 else "s", message.size,
                 (time.monotonic() - started) * 1000)
        crash_point("stored")
        if ctx.on_stored is not None:
            ctx.on_stored(info)
        if ctx.after_store is not None:
            return await ctx.after_store(info) or replies.MESSAGE_PROCESSED
        return replies.MESSAGE_PROCESSED
