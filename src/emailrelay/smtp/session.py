"""The asyncio adapter for one SMTP server connection.

It moves bytes between the socket and :class:`~emailrelay.smtp.server.ServerProtocol`,
streams message content into the spool and answers the protocol's requests.  Replies
produced while pipelined input is being worked through are sent in one write.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from emailrelay.auth.server import FAILURE_DELAY
from emailrelay.logs.setup import verbose
from emailrelay.net.listen import display_peer
from emailrelay.smtp import replies
from emailrelay.smtp import server as proto
from emailrelay.smtp.received import received_line
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import NewMessage, Spool
from emailrelay.tls.upgrade import TlsHandshakeError, TlsInfo, Upgraded, hold_input
from emailrelay.util.crashpoint import crash_point
from emailrelay.util.printable import printable
from emailrelay.verify.base import Verifier, VerifierStatus, VerifyQuery

log = logging.getLogger("emailrelay.smtp")

READ_SIZE = 1 << 17


def quickack_function(writer: asyncio.StreamWriter) -> Callable[[], None] | None:
    """Acknowledge received data at once (Linux TCP_QUICKACK, reset by the kernel).

    A client that does not set TCP_NODELAY holds its final small segment (".\r\n")
    until its previous one is acknowledged; without this our delayed ACK would cost
    it up to 40 ms per message.
    """
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return lambda: sock.setsockopt(socket.IPPROTO_TCP, option, 1)

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
    # The TLS feature's slot: the handshake after STARTTLS (writer, peer for the log).
    start_tls: Callable[[asyncio.StreamWriter, str], Awaitable[Upgraded]] | None = None
    auth_failure_delay: float = FAILURE_DELAY  # seconds before answering a failed AUTH
    # Told what happens, for metrics and the admin interface: ("received", <message id>)
    # and ("rejected", <reason>), see emailrelay.app.observer.
    on_count: Callable[[str, str], None] | None = None

    def count(self, name: str, detail: str = "") -> None:
        if self.on_count is not None:
            self.on_count(name, detail)


class SmtpSession:
    def __init__(self, context: SmtpContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: tuple[str, str],
                 tls: TlsInfo | None = None) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.peer_ip, self.peer_port = peer
        self.peer_display = display_peer(*peer)
        self.protocol = proto.ServerProtocol(context.make_config(self.peer_ip))
        self.tls = tls  # set once the connection is secure (implicit TLS or STARTTLS)
        self.protocol.secure = tls is not None
        self.message: NewMessage | None = None
        self._write_failed: str | None = None
        self._out: list[bytes] = []
        self._trace = log.isEnabledFor(15)
        self._quickack = quickack_function(writer)
        self.protocol.config.trace = self._trace
        self._reading = False

    @property
    def idle(self) -> bool:
        """Waiting for a command outside any transaction: may be stopped at shutdown."""
        return self._reading and self.protocol.state in (proto.State.START, proto.State.IDLE)

    async def run(self) -> None:
        reason = "disconnected before QUIT"
        try:
            reason = await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "connection reset by peer"
        except TimeoutError:
            reason = f"no activity after {self.context.idle_timeout:g}s"
        except asyncio.CancelledError:  # the process is stopping
            reason = "service shutting down"
            if not self.writer.is_closing():
                self._queue(proto.Send([replies.SHUTTING_DOWN]))
                self.writer.write(b"".join(self._out))
            raise
        finally:
            self._discard_message()
            self.writer.close()
            peer = self.peer_display
            log.info("smtp connection closed: %s%s", f"{reason}: " if reason else "", peer)
            if self.context.on_disconnect:
                self.context.on_disconnect()

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
                self._reading = True
                async with asyncio.timeout(self.context.idle_timeout or None):
                    data = await self.reader.read(READ_SIZE)
                self._reading = False
                if self._quickack is not None:
                    self._quickack()
                if data[:2] == b"\x16\x03" and self.tls is None and not p.helo_name:
                    log.warning("received unexpected tls handshake packet from remote client: "
                                "try enabling implicit tls (smtps)")
                p.receive_data(data)
            elif isinstance(event, proto.Send):
                self._queue(event)
            elif isinstance(event, proto.Rejected):
                self.context.count("rejected", event.reason)
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
            elif isinstance(event, proto.StartTls):
                if not await self._start_tls():
                    return "tls handshake failed"
            elif isinstance(event, proto.Notice):
                log.info("%s: %s", event.text, self.peer_ip or "unix-domain peer")
            elif isinstance(event, proto.AuthDone):
                await self._auth_done(event)
            elif isinstance(event, proto.Close):
                await self._flush()
                return event.reason
            else:
                raise AssertionError(f"event not handled yet: {event!r}")

    async def _start_tls(self) -> bool:
        """STARTTLS: the handshake, then a fresh reader (no plaintext survives)."""
        assert self.context.start_tls is not None
        hold_input(self.writer)  # before the go-ahead: the client's handshake must wait
        await self._flush()
        try:
            upgraded = await self.context.start_tls(self.writer, self.peer_display)
        except TlsHandshakeError:
            return False
        self.reader, self.writer, self.tls = upgraded.reader, upgraded.writer, upgraded.info
        self.protocol.tls_started()
        return True

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

    async def _auth_done(self, event: proto.AuthDone) -> None:
        """Log the login; after a failure wait before answering (other sessions go on)."""
        if event.outcome.ok:
            log.info("%s", event.outcome.describe())
            return
        log.warning("%s", event.outcome.describe())
        await self._flush()
        await asyncio.sleep(self.context.auth_failure_delay)

    # -- address verification -----------------------------------------------------------

    async def _verify(self, address: str, mail_from: str, command: str) -> VerifierStatus:
        p = self.protocol
        verifier = self.context.verifier
        assert verifier is not None, "verify_recipients needs a verifier"
        query = VerifyQuery(
            address=address, mail_from=mail_from, client=self.peer_display,
            domain=self.context.domain, command=command,
            auth_mechanism=(p.auth_mechanism or "").lower() if p.authenticated_user is not None
            else "none", auth_name=p.auth_id)
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
            self.context.count("rejected", "recipient")
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
            authentication=p.auth_id,
            client=self.peer_ip,
            client_certificate=self.tls.peer_certificate if self.tls else "",
            mail_from_auth_in=t.auth_param or "",
            utf8_mailbox_names=t.utf8_mailboxes,
        )
        self._write_failed = None
        try:
            self.message = self.context.spool.new_message(envelope)
            if self.context.add_received:
                self.message.write(received_line(
                    helo=p.helo_name, peer_ip=self.peer_ip, domain=self.context.domain,
                    secure=p.secure, authenticated=p.authenticated_user is not None,
                    cipher=self.tls.cipher if self.tls else "",
                    tls_version=self.tls.version if self.tls else ""))
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
            self.context.count("rejected", "storage")
            return self._write_failed or replies.TRANSACTION_FAILED
        message.envelope.body_type = BODY_TYPES.get(t.body, "unknown")
        ctx = self.context
        started = time.monotonic()
        info = StoredInfo(message, t, self.peer_ip)
        try:
            if ctx.before_publish is None:
                await message.commit(ctx.committer)
            else:
                # As E-MailRelay: the filter sees the flushed files, envelope still .new.
                await message.prepare(ctx.committer)
                ok, reply = await ctx.before_publish(info)
                if not ok:
                    message.abort()  # (a no-op if the hook kept the message as .bad)
                    ctx.count("rejected", "filter")
                    return reply
                await message.publish(ctx.committer, resync=True)
                for callback in info.after_publish:
                    callback()
        except OSError as e:
            self._storage_error(e)
            message.abort()
            ctx.count("rejected", "storage")
            return self._write_failed or replies.TRANSACTION_FAILED
        ctx.count("received", message.id)
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
