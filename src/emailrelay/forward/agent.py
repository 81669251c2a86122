"""The forwarding agent: when to forward, to where, over how many connections.

Triggers (start-up, ``--poll``, client disconnects, the admin ``forward`` command, a
filter's rescan request, our own retry timer) all call :meth:`Forwarder.request_forward`.
As in E-MailRelay, requests coalesce: they are handled on the next turn of the event
loop, and a request that arrives while a run is going on is queued and handled once
it ends.

A run reads the ready envelopes, groups them by route: destination (``ForwardToAddress``
or ``--forward-to``) and client account (``ClientAccountSelector``, as E-MailRelay
groups them), and drains each group over up to ``--forward-connections`` connections:
one connection first (the probe), more only once it got through.  Each
message is locked in the spool (``.busy``) for the duration, so no message is ever
forwarded twice at once, and deleted only after the server's 250 for its data.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from dataclasses import dataclass, field

from emailrelay.app.observer import Observer
from emailrelay.auth.client import ClientAuth, SelectorError
from emailrelay.auth.oauth import TokenError
from emailrelay.filters.client import ClientFilterOutcome, ClientFilters
from emailrelay.filters.msgid import FormatError, message_id_of
from emailrelay.filters.result import Verdict
from emailrelay.forward.address import AddressError, ForwardAddress, parse_forward_address
from emailrelay.forward.connection import ClientConnection, ConnectError, Timeouts
from emailrelay.forward.retry import DestinationState, RetryPolicy
from emailrelay.logs.setup import logged_field, peer_context, unit_context
from emailrelay.net.listen import address_pair
from emailrelay.policy.connections import Connection, ConnectionRegistry
from emailrelay.smtp import client as proto
from emailrelay.smtp import replies
from emailrelay.smtp.session import StoredInfo
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool, SpoolError, StoredMessage
from emailrelay.tls.profiles import ClientTls
from emailrelay.util.crashpoint import crash_point
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.forward")

# Requests that mean "now": they try messages and smarthosts that are backing off.
FORCING_REASONS = frozenset({"startup", "admin"})

Route = tuple[str, str]  # (ForwardToAddress, ClientAccountSelector); "" for the defaults


def route_of(envelope: Envelope) -> Route:
    return envelope.forward_to_address, envelope.client_account_selector


@dataclass
class ForwardSettings:
    forward_to: ForwardAddress | None
    client: proto.ClientConfig
    timeouts: Timeouts = field(default_factory=Timeouts)
    interface: str | None = None  # --client-interface
    connections: int = 2  # --forward-connections
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    poll: float = 0.0  # --poll
    unit: str = ""  # the instance name, for log lines
    tls: ClientTls | None = None  # --client-tls, --client-tls-connection
    auth: ClientAuth | None = None  # --client-auth


@dataclass
class RunReport:
    """What one forwarding run did."""

    started: int = 0
    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    not_tried: int = 0  # left in the spool because the smarthost could not be reached
    errors: list[str] = field(default_factory=list)
    stopped: bool = False  # a client filter ended the run (exit 102): the rest waits

    @property
    def complete(self) -> bool:
        """Nothing left behind that could still be sent."""
        return not self.deferred and not self.not_tried and not self.errors


class Forwarder:
    def __init__(self, spool: Spool, settings: ForwardSettings) -> None:
        self.spool = spool
        self.settings = settings
        self.destinations: dict[Route, DestinationState] = collections.defaultdict(
            DestinationState)
        self._reason: str | None = None
        self._force = False
        self._scheduled = False
        self._run_task: asyncio.Task[RunReport] | None = None
        self._queued = False
        self._poll_handle: asyncio.TimerHandle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self.last_report: RunReport | None = None
        self.runs_done = asyncio.Event()
        # --client-filter: run on each message before it is sent, or early, as
        # E-MailRelay's routing filter, for a message with a ForwardTo domain.
        self.client_filters: ClientFilters | None = None
        self.routing_filters: ClientFilters | None = None
        self._routed: set[str] = set()
        # Metrics and admin notify events; outgoing connections for admin "status".
        self.observer = Observer()
        self.connections: ConnectionRegistry | None = None

    # -- triggers ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the --poll timer (the first poll comes one period after start-up)."""
        if self.settings.poll > 0:
            self._schedule_poll()

    def request_forward(self, reason: str) -> None:
        """Ask for a forwarding run soon; repeated requests coalesce (last reason wins)."""
        if self._stopped or self.settings.forward_to is None:
            return
        self._reason = reason
        self._force = self._force or reason in FORCING_REASONS
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._on_request)

    def _logs(self, reason: str) -> bool:
        return reason != "poll" or self.settings.poll > 60 or log.isEnabledFor(logging.DEBUG)

    def _on_request(self) -> None:
        self._scheduled = False
        reason, force = self._reason or "", self._force
        if self._run_task is not None and not self._run_task.done():
            log.info("forwarding: [%s]: still busy from last time", reason)
            self._queued = True
            return
        self._reason, self._force = None, False
        if self._logs(reason):
            log.info("forwarding: [%s]", reason)
        self._run_task = asyncio.get_running_loop().create_task(self._run(reason, force))
        self._run_task.add_done_callback(self._on_run_done)

    def _on_run_done(self, task: asyncio.Task[RunReport]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("forwarding failure: %s", error)
        if self._queued and not self._stopped:
            self._queued = False
            reason = self._reason or ""
            log.info("forwarding: queued request [%s]", reason)
            self._scheduled = False
            self.request_forward(reason)

    def _schedule_poll(self) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.request_forward("poll")
            self._schedule_poll()

        self._poll_handle = loop.call_later(self.settings.poll, fire)

    def _schedule_retry(self, at: float) -> None:
        if self._stopped:
            return
        delay = max(0.0, at - time.time())
        if self._retry_handle is not None:
            if self._retry_handle.when() <= asyncio.get_running_loop().time() + delay:
                return  # an earlier retry is already due
            self._retry_handle.cancel()
        self._retry_handle = asyncio.get_running_loop().call_later(
            delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retry_handle = None
        self.request_forward("retry")

    async def stop(self) -> None:
        """Stop the timers and wait for the current run (messages in hand are released)."""
        self._stopped = True
        for handle in (self._poll_handle, self._retry_handle):
            if handle is not None:
                handle.cancel()
        task = self._run_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wait_idle(self) -> RunReport | None:
        """Wait for the current run, if any, and the queued ones after it."""
        while True:
            await asyncio.sleep(0)
            task = self._run_task
            if task is not None and not task.done():
                await asyncio.gather(task, return_exceptions=True)
                continue
            if self._scheduled or self._queued:
                continue
            return self.last_report

    # -- a run ------------------------------------------------------------------------------

    async def run_once(self, reason: str = "startup") -> RunReport:
        """One run now, for --as-client (start-up forwarding with nothing else to do)."""
        if self._logs(reason):
            log.info("forwarding: [%s]", reason)
        return await self._run(reason, force=True)

    def _log_context(self) -> None:
        """Forwarding lines belong to the instance, not to the client that triggered them."""
        peer_context.set(None)
        unit_context.set(self.settings.unit)

    async def _run(self, reason: str, force: bool) -> RunReport:
        self._log_context()
        self.observer.forwarding_started(reason)
        report = await self._run_over_spool(reason, force)
        self.observer.forwarding_ended("; ".join(report.errors))
        return report

    async def _run_over_spool(self, reason: str, force: bool) -> RunReport:
        report = RunReport()
        try:
            ids = self.spool.ready()
        except SpoolError as e:
            report.errors.append(str(e))
            log.error("forwarding: %s", e)
            self.last_report = report
            return report
        now = time.time()
        groups: dict[Route, list[str]] = {}
        waiting = 0
        self._routed.clear()
        for message_id in ids:
            envelope = self.spool.peek(message_id)
            if envelope is None:
                self._set_aside_if_unreadable(message_id)
                continue
            if not force and envelope.retry_after > now:
                waiting += 1
                continue
            if envelope.forward_to and self.routing_filters is not None:
                envelope = await self._route(message_id, report)
                if envelope is None:
                    continue
            groups.setdefault(route_of(envelope), []).append(message_id)
        if not groups:
            if self._logs(reason) and not waiting:
                log.info("forwarding: no messages to send")
        else:
            await asyncio.gather(*(self._drain(route, queue, force, report)
                                   for route, queue in groups.items()))
            if report.started:
                log.info("forwarding: no more messages to send")
        for error in report.errors:
            log.error("forwarding: %s", error)
        self._plan_retries()
        self.last_report = report
        return report

    def _set_aside_if_unreadable(self, message_id: str) -> None:
        """peek() failed: the envelope is gone, or lock() sets it aside as .bad and logs
        why (else it would be skipped silently on every run)."""
        message = self.spool.lock(message_id)
        if message is not None:  # rewritten meanwhile and readable now: leave it queued
            message.release()

    def _plan_retries(self) -> None:
        """Set the retry timer for the earliest message or smarthost that comes due."""
        now = time.time()
        times: list[float] = []
        for message_id in self.spool.ready():
            envelope = self.spool.peek(message_id)
            if envelope is None:
                continue
            state = self.destinations.get(route_of(envelope))
            if envelope.retry_after:
                times.append(envelope.retry_after)
            if state is not None and state.failures:
                times.append(state.next_probe)
        future = [t for t in times if t > now]  # never a busy loop on what cannot go
        if future:
            self._schedule_retry(min(future))

    def _address_for(self, destination: str) -> ForwardAddress:
        if not destination:
            assert self.settings.forward_to is not None
            return self.settings.forward_to
        return parse_forward_address(destination)

    async def _drain(self, route: Route, ids: list[str], force: bool,
                     report: RunReport) -> None:
        try:
            address = self._address_for(route[0])
        except AddressError as e:
            log.warning("forwarding: skipping %d message%s with an unusable "
                        "forward-to-address: %s", len(ids), "" if len(ids) == 1 else "s", e)
            report.not_tried += len(ids)
            return
        if not self._account_exists(route[1], ids, report):
            return
        state = self.destinations[route]
        now = time.time()
        if not force and state.down(now):
            report.not_tried += len(ids)
            return
        queue = collections.deque(ids)
        connected = asyncio.Event()
        workers = [asyncio.create_task(self._worker(address, route, queue, report,
                                                    connected))]
        # The first connection is the probe: more only once it got through.
        probe_or_done = asyncio.create_task(connected.wait())
        await asyncio.wait([workers[0], probe_or_done], return_when=asyncio.FIRST_COMPLETED)
        probe_or_done.cancel()
        if connected.is_set():
            while len(workers) < self.settings.connections and len(queue) > len(workers):
                workers.append(asyncio.create_task(
                    self._worker(address, route, queue, report, None)))
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
        if queue and not report.stopped:
            report.not_tried += len(queue)
            self._expire_unreachable(list(queue), state.last_error)

    def _account_exists(self, selector: str, ids: list[str], report: RunReport) -> bool:
        """False (and the messages failed) when they name a client account there is not."""
        auth = self.settings.auth
        try:
            if auth is not None:
                auth.account(selector)
            elif selector:
                raise SelectorError(f"no --client-auth for the client account selector "
                                    f"[{selector}]")
        except SelectorError as e:
            for message_id in ids:
                message = self.spool.lock(message_id)
                if message is not None:
                    self._fail(message, str(e), 0, report)
            return False
        return True

    async def _client_config(self, selector: str) -> proto.ClientConfig:
        """The client settings with this account's login (raises TokenError)."""
        auth = self.settings.auth
        login = await auth.login(selector) if auth is not None else None
        if login is None:
            return self.settings.client
        return dataclasses.replace(self.settings.client, authenticator=login)

    async def _worker(self, address: ForwardAddress, route: Route,
                      queue: collections.deque[str], report: RunReport,
                      connected: asyncio.Event | None) -> None:
        """Connect and send messages from the queue; reconnect after a failed message."""
        state = self.destinations[route]
        while queue and not report.stopped:
            try:
                config = await self._client_config(route[1])
                conn = await ClientConnection.open(address, config, self.settings.timeouts,
                                                   self.settings.interface, self.settings.tls)
            except (ConnectError, TokenError, SelectorError) as e:
                where = f"cannot connect to {address.display()}: " if isinstance(
                    e, ConnectError) else ""
                self._connection_failed(state, f"{where}{e}", report)
                return
            tracked = self._track(conn)
            try:
                if not await conn.start():
                    self._connection_failed(state, conn.error or "no session", report)
                    return
                state.succeeded()
                if connected is not None:
                    connected.set()
                progress = await self._send_all(conn, queue, report, route[1])
            finally:
                await conn.quit()
                if tracked is not None and self.connections is not None:
                    self.connections.close(tracked)
            if conn.error is None:
                return
            log.warning("smtp client error: %s", conn.error)
            if not progress:
                report.errors.append(conn.error)
                return

    def _track(self, conn: ClientConnection) -> Connection | None:
        """Show the connection in the admin "status" report while it lasts."""
        if self.connections is None:
            return None
        return self.connections.outgoing(address_pair(conn.writer.get_extra_info("sockname")),
                                         conn.peer)

    def _connection_failed(self, state: DestinationState, error: str,
                           report: RunReport) -> None:
        log.warning("smtp client error: %s", error)
        state.failed(self.settings.retry, error, time.time())
        report.errors.append(error)

    async def _send_all(self, conn: ClientConnection, queue: collections.deque[str],
                        report: RunReport, selector: str) -> bool:
        """Send queued messages while the session lasts; True if any got an answer."""
        progress = False
        while queue and conn.ready and not report.stopped:
            message = self.spool.lock(queue.popleft())
            if message is None:
                continue  # gone, taken by someone else, or set aside as .bad
            try:
                if self.client_filters is not None and message.id not in self._routed:
                    outcome = await self.client_filters.run(message)
                    if outcome.stop_scan and not report.stopped:
                        report.stopped = True  # every route's workers stop taking messages
                        log.info("forwarding: a client filter stopped the run: what is left "
                                 "waits for the next one")
                    if not self._filter_passed(message, outcome, report):
                        continue
                if message.envelope.client_account_selector != selector:
                    self._defer(message, "the client filter changed the client account "
                                "selector: it goes on another connection", report)
                    continue
                await self._send_one(conn, message, report)
                progress = True
            except BaseException:
                _release_quietly(message)
                raise
        return progress

    async def _route(self, message_id: str, report: RunReport) -> Envelope | None:
        """Run the routing filter early so that it can set ForwardToAddress."""
        assert self.routing_filters is not None
        message = self.spool.lock(message_id)
        if message is None:
            return None
        try:
            outcome = await self.routing_filters.run(message)
        except BaseException:
            _release_quietly(message)
            raise
        if not self._filter_passed(message, outcome, report):
            return None
        self._routed.add(message_id)
        message.release()
        return message.envelope

    def _filter_passed(self, message: StoredMessage, outcome: ClientFilterOutcome,
                       report: RunReport) -> bool:
        """Act on a client filter's verdict; True if the message is to be sent."""
        if outcome.verdict is Verdict.OK:
            return True
        if outcome.verdict is Verdict.FAIL:
            self._fail(message, outcome.reason, outcome.reason_code, report)
        else:
            _release_quietly(message)  # abandoned: the filter may have moved it
        return False

    async def _send_one(self, conn: ClientConnection, message: StoredMessage,
                        report: RunReport) -> proto.Outcome:
        envelope = message.envelope
        if not envelope.to_remote:
            return self._no_remote_recipients(message, report)
        report.started += 1
        info = ""
        if envelope.forward_to:
            info += f" forward-to=[{envelope.forward_to}]"
        if envelope.forward_to_address:
            info += f" forward-to-address=[{envelope.forward_to_address}]"
        if logged_field("msgid"):
            info += f" message-id=[{_message_id(message)}]"
        log.info("forwarding [%s]%s", message.id, info)
        self.observer.message_sending(message.id)
        started = time.monotonic()
        outgoing = proto.OutgoingMessage(
            mail_from=envelope.from_, recipients=list(envelope.to_remote),
            body_type=envelope.body_type, utf8_mailboxes=envelope.utf8_mailbox_names,
            size=message.content_path.stat().st_size, auth_out=envelope.mail_from_auth_out)
        outcome = await conn.send(outgoing, message.content_path)
        self.apply(message, outcome, report)
        if outcome.result is proto.Result.DELIVERED:
            self.observer.message_forwarded(message.id, time.monotonic() - started)
        return outcome

    def _no_remote_recipients(self, message: StoredMessage,
                              report: RunReport) -> proto.Outcome:
        log.warning("forwarding [%s]: failing message with no remote recipients", message.id)
        message.fail("no remote recipients", 0)
        self.observer.message_failed(message.id, "no remote recipients")
        report.failed += 1
        return proto.Outcome(proto.Result.FAILED, "no remote recipients")

    # -- outcomes ---------------------------------------------------------------------------

    def apply(self, message: StoredMessage, outcome: proto.Outcome,
              report: RunReport) -> None:
        """Delete, fail (.bad) or release the message according to the outcome."""
        if outcome.result is proto.Result.DELIVERED and not outcome.rejected:
            crash_point("forwarded")
            message.delete()
            report.delivered += 1
            return
        if outcome.result is proto.Result.DELIVERED:
            # --forward-to-some: keep only the rejected recipients, as E-MailRelay does.
            rejected = [r.recipient for r in outcome.rejected]
            envelope = message.envelope
            envelope.to_remote = [to for to in envelope.to_remote if to in rejected]
            report.delivered += 1
            if all(r.permanent for r in outcome.rejected):
                message.rewrite(envelope)
                self._fail(message, outcome.reason, outcome.code, report)
            else:
                self._defer(message, outcome.reason, report)
            return
        if outcome.result is proto.Result.FAILED:
            self._fail(message, outcome.reason, outcome.code, report)
        else:
            self._defer(message, outcome.reason, report)

    def _fail(self, message: StoredMessage, reason: str, code: int,
              report: RunReport) -> None:
        log.warning("forwarding [%s]: failed: %s", message.id, reason)
        message.fail(reason, code or "")
        self.observer.message_failed(message.id, reason)
        report.failed += 1

    def _defer(self, message: StoredMessage, reason: str, report: RunReport) -> None:
        envelope: Envelope = message.envelope
        policy = self.settings.retry
        now = time.time()
        if policy.expired(self.spool.arrival_time(message.id), now):
            self._fail(message, f"too old to retry: {reason}", 0, report)
            return
        attempt = envelope.retry_count + 1
        delay = policy.delay(attempt)
        envelope.set_retry(attempt, now + delay)
        log.warning("forwarding [%s]: will retry in %ds: %s", message.id, round(delay),
                    reason)
        message.release(envelope)
        report.deferred += 1
        self.observer.message_deferred(message.id, reason)

    def _expire_unreachable(self, ids: list[str], error: str) -> None:
        """Messages past --retry-max-age that could not even be tried go to .bad now."""
        policy = self.settings.retry
        if policy.max_age <= 0:
            return
        now = time.time()
        for message_id in ids:
            if not policy.expired(self.spool.arrival_time(message_id), now):
                continue
            message = self.spool.lock(message_id)
            if message is not None:
                log.warning("forwarding [%s]: failed: too old to retry: %s", message_id,
                            error or "smarthost unreachable")
                message.fail(f"too old to retry: {error or 'smarthost unreachable'}", 0)
                self.observer.message_failed(message_id, "too old to retry")

    # -- one message, now (--immediate) -----------------------------------------------------

    async def immediate_reply(self, info: StoredInfo) -> str | None:
        """--immediate: forward before the client's reply; a permanent failure is passed
        back to the client, anything else is the usual 250 (the message is spooled)."""
        outcome = await self.forward_now(info.message.id)
        if outcome is not None and outcome.result is proto.Result.FAILED:
            return replies.forwarding_failed(outcome.reason)
        return None

    async def forward_now(self, message_id: str) -> proto.Outcome | None:
        """Forward one just-stored message on its own connection (None: not tried)."""
        if self.settings.forward_to is None:
            return None
        message = self.spool.lock(message_id)
        if message is None:
            return None
        report = RunReport()
        if not message.envelope.to_remote:
            return self._no_remote_recipients(message, report)
        conn: ClientConnection | None = None
        try:
            address = self._address_for(message.envelope.forward_to_address)
            selector = message.envelope.client_account_selector
            if not self._account_exists(selector, [], report):
                message.release()
                return None
            conn = await ClientConnection.open(address, await self._client_config(selector),
                                               self.settings.timeouts, self.settings.interface,
                                               self.settings.tls)
            if not await conn.start():
                raise ConnectError(conn.error or "no session")
            return await self._send_one(conn, message, report)
        except (AddressError, ConnectError, TokenError) as e:
            log.warning("smtp client error: %s", e)
            message.release()
            return proto.Outcome(proto.Result.DEFERRED, str(e))
        except BaseException:
            _release_quietly(message)
            raise
        finally:
            if conn is not None:
                await conn.quit()


def _message_id(message: StoredMessage) -> str:
    """The content's Message-ID for the log, printable, or "" (none, or unreadable)."""
    try:
        with open(message.content_path, "rb") as f:
            found = message_id_of(f) or ""
    except (OSError, FormatError):
        return ""
    return printable(found)


def _release_quietly(message: StoredMessage) -> None:
    """Give back a message whose attempt was interrupted (if it is still ours)."""
    if message.envelope_path.exists():
        try:
            message.release()
        except OSError as e:
            log.warning("cannot release \"%s\": %s", message.id, e.strerror)
