"""The asyncio adapter for POP3 connections, and what all of an instance's sessions share.

A session moves bytes between the socket and :class:`~emailrelay.pop.protocol.PopProtocol`,
opens and locks the maildrop (:class:`~emailrelay.spool.store.Maildrop`), streams
messages from disk and removes deleted ones at QUIT.  After a failed login it waits
:data:`FAILURE_DELAY` seconds before answering, so passwords cannot be guessed quickly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from emailrelay.auth.sasl import Outcome, SaslServer, make_challenge
from emailrelay.auth.secrets import SecretsFile
from emailrelay.auth.server import FAILURE_DELAY, open_secrets
from emailrelay.logs.setup import VERBOSE
from emailrelay.net.listen import display_peer
from emailrelay.options.parser import Settings
from emailrelay.pop import protocol as proto
from emailrelay.pop import replies
from emailrelay.pop.content import ContentEncoder, octet_count
from emailrelay.spool.store import (
    MailboxNameError,
    Maildrop,
    MaildropMessage,
    OpenedMessage,
    Spool,
    valid_mailbox_name,
)
from emailrelay.tls.upgrade import TlsHandshakeError, TlsInfo, Upgraded, hold_input
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.pop")

READ_SIZE = 1 << 16
FILE_CHUNK = 1 << 18  # content read from disk at a time
SIZE_CACHE_LIMIT = 10000
TRACE_LINES = 7  # longer multi-line replies are shortened in the protocol log


@dataclass
class PopContext:
    """Everything the POP sessions of one instance share."""

    spool: Spool
    secrets: SecretsFile
    domain: str  # for APOP and CRAM challenges
    by_name: bool = False  # --pop-by-name
    allow_delete: bool = True  # not --pop-no-delete
    idle_timeout: float = 60.0
    failure_delay: float = FAILURE_DELAY
    # The TLS feature's slot: the handshake after STLS (writer, peer for the log).
    start_tls: Callable[[asyncio.StreamWriter, str], Awaitable[Upgraded]] | None = None
    tls_required: bool = False
    sizes: dict[tuple[int, int, int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sasl = SaslServer(self.secrets.current, self.domain)

    def config(self) -> proto.PopConfig:
        sasl = self.sasl
        return proto.PopConfig(
            sasl=sasl,
            apop_challenge=make_challenge(self.domain) if sasl.apop_available() else None,
            tls_available=self.start_tls is not None, tls_required=self.tls_required)

    def prepare(self) -> None:
        """With --pop-by-name, give every account its maildrop now (after privileges are
        dropped), so that the copy filter has somewhere to put mail before a first login."""
        if not self.by_name:
            return
        for user in self.secrets.current().server_users():
            if valid_mailbox_name(user):
                self.spool.mailbox(user)
            else:
                log.warning("pop account [%s] cannot have a pop-by-name maildrop: the name "
                            "is not usable as a directory name", user)

    def size_of(self, message: MaildropMessage) -> int:
        """The RFC 1939 size, remembered per file version (computing it reads the file)."""
        st = message.content_path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        size = self.sizes.get(key)
        if size is None:
            with open(message.content_path, "rb") as f:
                size = octet_count(iter(lambda: f.read(FILE_CHUNK), b""))
            if len(self.sizes) >= SIZE_CACHE_LIMIT:
                self.sizes.clear()
            self.sizes[key] = size
        return size


def pop_context(settings: Settings, spool: Spool, domain: str) -> PopContext:
    """The POP service for an instance's options (--pop-auth is read here, at start-up)."""
    path = settings.value("pop-auth") or ""
    secrets = open_secrets("pop-auth", path)
    if not secrets.current().server:
        log.warning("the --pop-auth secrets file \"%s\" has no server accounts: nobody can "
                    "log in to the POP server", path)
    return PopContext(spool=spool, secrets=secrets, domain=domain,
                      by_name=settings.flag("pop-by-name"),
                      allow_delete=not settings.flag("pop-no-delete"),
                      idle_timeout=float(settings.int("idle-timeout") or 0))


class PopSession:
    def __init__(self, context: PopContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: tuple[str, str],
                 tls: TlsInfo | None = None) -> None:
        self.context = context
        self.reader = reader
        self.writer = writer
        self.peer_ip, self.peer_port = peer
        self.peer_display = display_peer(*peer)
        self.protocol = proto.PopProtocol(context.config())
        self.protocol.secure = tls is not None  # implicit TLS (POP3S)
        self.maildrop: Maildrop | None = None
        self._opened: OpenedMessage | None = None
        self._out: list[bytes] = []
        self._trace = log.isEnabledFor(VERBOSE)

    async def run(self) -> None:
        reason = "disconnected before QUIT"
        try:
            reason = await self._serve()
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "connection reset by peer"
        except TimeoutError:
            reason = f"no activity after {self.context.idle_timeout:g}s"
        finally:
            if self._opened is not None:
                self._opened.close()
            if self.maildrop is not None:
                self.maildrop.unlock()
            self.writer.close()
            log.info("pop connection closed: %s%s", f"{reason}: " if reason else "",
                     self.peer_display)

    async def _serve(self) -> str:
        p = self.protocol
        self._queue(p.greeting())
        while True:
            event = p.next_event()
            if event is proto.NEED_DATA:
                await self._flush()
                data = await asyncio.wait_for(self.reader.read(READ_SIZE),
                                              self.context.idle_timeout or None)
                p.receive_data(data)
            elif isinstance(event, proto.Send):
                self._queue(event)
            elif isinstance(event, proto.Trace):
                if self._trace:
                    log.log(VERBOSE, 'rx<<: "%s"', event.text)
            elif isinstance(event, proto.AuthResult):
                await self._auth_result(event.outcome)
            elif isinstance(event, proto.OpenMaildrop):
                await self._open_maildrop(event.user)
            elif isinstance(event, proto.OpenMessage):
                assert self.maildrop is not None
                self._opened = self.maildrop.open(event.ref)
                p.message_opened(self._opened is not None)
            elif isinstance(event, proto.StreamMessage):
                await self._stream(event.body_lines)
            elif isinstance(event, proto.Commit):
                p.committed(await self._commit(event.refs))
            elif isinstance(event, proto.StartTls):
                assert self.context.start_tls is not None
                hold_input(self.writer)  # before the go-ahead: the handshake must wait
                await self._flush()
                try:
                    upgraded = await self.context.start_tls(self.writer, self.peer_display)
                except TlsHandshakeError:
                    return "tls handshake failed"
                self.reader, self.writer = upgraded.reader, upgraded.writer
                p.tls_started()
            elif isinstance(event, proto.Close):
                await self._flush()
                return event.reason
            else:
                raise AssertionError(f"event not handled: {event!r}")

    # -- output -----------------------------------------------------------------------------

    def _queue(self, send: proto.Send) -> None:
        if self._trace:
            lines = send.lines
            if len(lines) > TRACE_LINES:
                lines = [*lines[:4], f"[{len(lines) - 6} lines]", *lines[-2:]]
            for line in lines:
                log.log(VERBOSE, 'tx>>: "%s"', line)
        self._out.append(send.to_bytes())

    async def _flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            await self._drain()

    async def _drain(self) -> None:
        await asyncio.wait_for(self.writer.drain(), self.context.idle_timeout or None)

    # -- requests from the protocol -----------------------------------------------------------

    async def _auth_result(self, outcome: Outcome) -> None:
        mechanism = outcome.mechanism.lower()
        if outcome.ok:
            log.info("pop authentication of %s connected from %s (mechanism [%s])",
                     printable(outcome.user), self.peer_display, mechanism)
            return
        log.warning("%s", outcome.describe())
        await self._flush()
        await asyncio.sleep(self.context.failure_delay)

    async def _open_maildrop(self, user: str) -> None:
        ctx = self.context
        try:
            maildrop = ctx.spool.maildrop(user if ctx.by_name else None)
            locked = maildrop.lock()
        except MailboxNameError as e:
            log.warning("pop user [%s] refused: %s", user, e)
            self.protocol.maildrop_refused(replies.MAILBOX_NAME)
            return
        except OSError as e:
            log.error("cannot open the maildrop of pop user [%s]: %s", user, e.strerror)
            self.protocol.maildrop_refused(replies.MAILDROP_UNAVAILABLE)
            return
        if not locked:
            log.warning("pop user [%s]: maildrop \"%s\" is in use by another session", user,
                        maildrop.directory)
            self.protocol.maildrop_refused(replies.MAILDROP_LOCKED)
            return
        self.maildrop = maildrop
        try:
            listing = await asyncio.get_running_loop().run_in_executor(None, self._list)
        except OSError as e:
            log.error("cannot read the maildrop \"%s\": %s", maildrop.directory, e.strerror)
            maildrop.unlock()
            self.maildrop = None
            self.protocol.maildrop_refused(replies.MAILDROP_UNAVAILABLE)
            return
        self.protocol.maildrop_opened(listing)

    def _list(self) -> list[proto.Listed]:
        assert self.maildrop is not None
        listing = []
        for message in self.maildrop.messages():
            try:
                size = self.context.size_of(message)
            except FileNotFoundError:
                continue  # removed meanwhile
            listing.append(proto.Listed(size, message.uidl, message))
        return listing

    async def _stream(self, body_lines: int | None) -> None:
        opened, self._opened = self._opened, None
        assert opened is not None
        encoder = ContentEncoder(body_lines)
        await self._flush()
        with opened:
            while not encoder.finished:
                chunk = opened.file.read(FILE_CHUNK)
                if not chunk:
                    break
                out = encoder.feed(chunk)
                if out:
                    self.writer.write(out)
                    await self._drain()
        self.writer.write(encoder.finish())
        if self._trace:
            log.log(VERBOSE, "tx>>: [%d line%s of content]", encoder.lines,
                    "" if encoder.lines == 1 else "s")
            log.log(VERBOSE, 'tx>>: "."')

    async def _commit(self, refs: list[MaildropMessage]) -> int:
        assert self.maildrop is not None
        if not self.context.allow_delete:
            log.debug("pop: --pop-no-delete: not deleting %d message%s", len(refs),
                      "" if len(refs) == 1 else "s")
            return 0
        failed = await asyncio.get_running_loop().run_in_executor(
            None, self.maildrop.delete, refs)
        removed = len(refs) - len(failed)
        log.info("pop: deleted %d message%s from \"%s\"%s", removed, "" if removed == 1 else "s",
                 self.maildrop.directory,
                 f" ({len(failed)} could not be removed)" if failed else "")
        return len(failed)
