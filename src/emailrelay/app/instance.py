"""One relay instance: a spool directory with the servers and forwarding around it.

Several instances can share a process (``--in-spool-dir``, ``--out-spool-dir``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from emailrelay.admin.backend import ForwarderControl, InstanceAdmin
from emailrelay.admin.core import ForwardingControl
from emailrelay.admin.server import AdminServer
from emailrelay.app.services import Services
from emailrelay.auth.server import server_auth
from emailrelay.filters.setup import client_filters, server_filters
from emailrelay.forward.agent import Forwarder
from emailrelay.forward.config import forward_settings
from emailrelay.logs.setup import peer_context, unit_context
from emailrelay.net.listen import ListenSpec, address_pair, display_address, open_all, specs_for
from emailrelay.net.local import is_local
from emailrelay.options.parser import Settings
from emailrelay.options.switches import SERVER_SMTP_DEFAULTS, parse_switches
from emailrelay.policy.connections import Connection, Refusal
from emailrelay.policy.dnsbl import DnsblChecker, DnsblConfig
from emailrelay.pop.session import PopSession, pop_context
from emailrelay.smtp.server import ServerConfig
from emailrelay.smtp.session import SmtpContext, SmtpSession
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.store import Spool, is_tmpfs
from emailrelay.tls.setup import server_tls
from emailrelay.tls.upgrade import TlsHandshakeError, TlsInfo, hold_input
from emailrelay.verify.setup import verifier_from_settings

log = logging.getLogger("emailrelay")

STREAM_LIMIT = 1 << 17  # reading pauses when this much input is waiting


def anonymous_scopes(settings: Settings) -> set[str]:
    value = settings.given.get("anonymous")
    if value is None:
        return set()
    if value is True or value == "":
        return {"vrfy", "server", "content", "client"}
    return {v.strip().lower() for v in str(value).split(",") if v.strip()}


def canonical_name() -> str:
    return socket.getfqdn() or "localhost"


@dataclass
class Instance:
    settings: Settings
    committer: GroupCommitter
    services: Services = field(default_factory=Services)
    spool: Spool = field(init=False)
    domain: str = field(init=False)
    listeners: list[tuple[ListenSpec, socket.socket]] = field(default_factory=list)
    servers: list[asyncio.base_events.Server] = field(default_factory=list)
    sessions: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.spool = Spool(s.value("spool-dir") or "/var/spool/emailrelay")
        self.domain = s.value("domain") or canonical_name()
        self.anonymous = anonymous_scopes(s)
        self.smtp_switches = parse_switches(s.values("server-smtp-config"),
                                            SERVER_SMTP_DEFAULTS)
        # --filter; its request_forward is for the forwarding agent to connect.
        self.filters = server_filters(s, self.spool, self.domain)
        self.verifier = verifier_from_settings(s, self.domain)
        self.server_tls = server_tls(s)
        starttls = self.server_tls is not None and not self.server_tls.implicit
        self.server_auth = server_auth(s, self.domain)  # --server-auth
        self.smtp_context = SmtpContext(
            spool=self.spool, committer=self.committer, make_config=self.smtp_config,
            domain=self.domain, add_received="content" not in self.anonymous,
            idle_timeout=float(s.int("idle-timeout") or 0),
            before_publish=self.filters.before_publish if self.filters else None,
            verifier=self.verifier,
            start_tls=self.server_tls.accept if self.server_tls and starttls else None,
            on_count=self.services.observer.smtp_count)
        self.forwarder: Forwarder | None = None
        forwarding = forward_settings(s, self.domain, anonymous="client" in self.anonymous)
        if forwarding is not None:
            forwarder = self.forwarder = Forwarder(self.spool, forwarding)
            if s.flag("forward-on-disconnect"):
                self.smtp_context.on_disconnect = lambda: forwarder.request_forward(
                    "client disconnect")
            if s.flag("immediate"):
                self.smtp_context.after_store = forwarder.immediate_reply
            forwarder.client_filters = client_filters(s, self.spool, self.domain)
            forwarder.routing_filters = client_filters(s, self.spool, self.domain,
                                                       routing=True)
            if self.filters is not None:
                self.filters.request_forward = forwarder.request_forward
        self.pop_context = pop_context(s, self.spool, self.domain) if s.flag("pop") else None
        if self.pop_context is not None and starttls and self.server_tls is not None:
            self.pop_context.start_tls = self.server_tls.accept
            self.pop_context.tls_required = self.server_tls.required
        # What SIGHUP reloads: certificates and secrets files.
        client_auth = self.forwarder.settings.auth if self.forwarder else None
        for hook in (
            self.server_tls, forwarding and forwarding.tls,
            self.server_auth.secrets if self.server_auth else None,
            self.pop_context.secrets if self.pop_context else None,
            client_auth.secrets_file if client_auth else None):
            if hook is not None:
                self.services.reloads.register(hook)
        self._policy_setup()

    def _policy_setup(self) -> None:
        """--dnsbl, --admin, smtp enable/disable and metrics."""
        s = self.settings
        self._smtp_enabled = True
        # Told when the admin interface switches SMTP (for --workers processes).
        self.on_smtp_switch: Callable[[bool], None] | None = None
        # For the admin forward and flush commands, and metrics and events.
        self.forwarding: ForwardingControl | None = None
        if self.forwarder is not None:
            self.forwarding = ForwarderControl(self.forwarder)
            self.forwarder.observer = self.services.observer
            self.forwarder.connections = self.services.connections
        self.dnsbl = DnsblChecker(DnsblConfig.parse(",".join(s.values("dnsbl")))) \
            if s.has("dnsbl") else None
        self.admin = AdminServer(InstanceAdmin(self, self.services),
                                 self.services.observer.events,
                                 terminate_allowed=s.flag("admin-terminate")) \
            if s.has("admin") else None
        self.smtp_sessions: dict[asyncio.Task[None], SmtpSession] = {}
        if self.services.observer.metrics is not None:
            self.services.observer.metrics.watch_spool(self.name, self.spool)

    @property
    def smtp_enabled(self) -> bool:
        """False after the admin interface's "smtp disable": new sessions get 421."""
        return self._smtp_enabled

    @smtp_enabled.setter
    def smtp_enabled(self, enabled: bool) -> None:
        self._smtp_enabled = enabled
        if self.on_smtp_switch is not None:
            self.on_smtp_switch(enabled)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def serves(self) -> bool:
        return not self.settings.flag("dont-serve")

    @property
    def forwards(self) -> bool:
        """Forwards on its own (at start-up or by polling), not only when a client asks."""
        s = self.settings
        return self.forwarder is not None and (s.flag("forward") or (s.int("poll") or 0) > 0)

    @property
    def quit_when_sent(self) -> bool:
        """--as-client (or --forward --dont-serve): one run over the spool, then exit."""
        s = self.settings
        return (not self.listeners and self.forwarder is not None and s.flag("forward")
                and not (s.int("poll") or 0))

    def listen_specs(self) -> list[ListenSpec]:
        s = self.settings
        if not self.serves:
            return []
        specs = [] if s.flag("no-smtp") else specs_for("smtp", s.values("interface"),
                                                       s.int("port") or 0)
        if self.pop_context is not None:
            specs += specs_for("pop", s.values("interface"), s.int("pop-port") or 0)
        if self.admin is not None:
            specs += specs_for("admin", s.values("interface"), s.int("admin") or 0)
        return specs

    def open_listeners(self) -> None:
        """Bind every listening socket (before daemonising and dropping privileges)."""
        self.listeners = open_all(self.listen_specs())

    def keep_listeners(self, kind: str) -> None:
        """In a --workers process: close the listening sockets of every other kind."""
        for spec, sock in self.listeners:
            if spec.kind != kind:
                sock.close()
        self.listeners = [(spec, sock) for spec, sock in self.listeners if spec.kind == kind]
        if kind != "admin":
            self.admin = None

    def prepare_spool(self) -> None:
        self.spool.recover()
        if self.pop_context is not None:
            self.pop_context.prepare()
        if is_tmpfs(self.spool.directory):
            # Information, not a warning: OpenWrt's default spool (/var) is a RAM file
            # system, and a healthy start there must not look like a problem.
            log.info("the spool directory \"%s\" is on a RAM file system: messages will "
                     "not survive a reboot", self.spool.directory)

    def smtp_config(self, peer_ip: str) -> ServerConfig:
        sw = self.smtp_switches
        trust = self.server_auth.trust(peer_ip) if self.server_auth else None
        return ServerConfig(
            domain=self.domain,
            max_size=self.settings.int("size") or 0,
            pipelining=sw["pipelining"],
            chunking=sw["chunking"],
            smtputf8=sw["smtputf8"],
            smtputf8_strict=sw["smtputf8strict"],
            strict_parsing=sw["strictparsing"],
            alabels=sw["alabels"],
            anonymous_server="server" in self.anonymous,
            vrfy_enabled="vrfy" not in self.anonymous,
            verify_recipients=self.verifier is not None,
            tls_available=self.smtp_context.start_tls is not None,
            tls_required=self.server_tls is not None and self.server_tls.required,
            authenticator=self.server_auth,
            trusted=trust.keyword if trust else None,
            enabled=self.smtp_enabled,
        )

    async def start(self) -> None:
        for spec, sock in self.listeners:
            server = await asyncio.start_server(
                functools.partial(self._connected, spec.kind), sock=sock, limit=STREAM_LIMIT)
            self.servers.append(server)
            self.services.connections.add_listener(spec.kind, spec.display())
            prefix = f"[{self.name}] " if self.name else ""
            log.info("%s%s server on %s", prefix, spec.kind, spec.display())

    def start_forwarding(self) -> None:
        """After the servers: report the smarthost, forward at start-up, start polling."""
        if self.forwarder is None:
            return
        prefix = f"[{self.name}] " if self.name else ""
        address = self.forwarder.settings.forward_to
        assert address is not None
        log.info("%sforwarding to %s", prefix, address.display())
        if self.settings.flag("immediate") and self.listeners:
            log.warning("using --immediate can result in client timeout errors: try "
                        "--forward-on-disconnect instead")
        if self.settings.flag("forward") and not self.quit_when_sent:
            self.forwarder.request_forward("startup")
        self.forwarder.start()

    def _connected(self, kind: str, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> Coroutine[None, None, None]:
        """Called as the connection is made, before anything is read from it: with
        implicit TLS the client's first bytes must be left for the TLS layer."""
        if self._implicit_tls(kind):
            hold_input(writer)
        return self._on_connection(kind, reader, writer)  # asyncio runs it as a task

    def _implicit_tls(self, kind: str) -> bool:
        """--server-tls-connection: SMTP and POP3 listeners speak TLS from the start."""
        return kind in ("smtp", "pop") and self.server_tls is not None and (
            self.server_tls.implicit)

    async def _on_connection(self, kind: str, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        peer = _peer_of(writer)
        peer_context.set(peer)
        unit_context.set(self.name)
        if not self.settings.flag("remote-clients") and not is_local(peer[0]):
            log.warning("configured to reject non-local %s connection: %s is not a local "
                        "address (use --remote-clients)", kind, peer[0])
            self.services.observer.rejected("remote_client")
            writer.close()
            return
        connection = self.services.connections.admit(kind, _local_of(writer), peer)
        if isinstance(connection, Refusal):
            writer.write(connection.reply.encode() + b"\r\n")
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        display = display_address(*peer) if peer[0] else "a unix-domain peer"
        log.info("%s connection from %s", kind, display)
        task = asyncio.current_task()
        assert task is not None
        if kind != "admin":  # admin connections do not wait for the grace period
            self.sessions.add(task)
        try:
            if kind == "admin":
                assert self.admin is not None
                await self.admin.serve(reader, writer, peer)
                return
            tls: TlsInfo | None = None
            if self._implicit_tls(kind) and self.server_tls is not None:
                try:
                    upgraded = await self.server_tls.accept(writer, display)
                except TlsHandshakeError:
                    log.info("%s connection closed: tls handshake failed: %s", kind, display)
                    return
                reader, writer, tls = upgraded.reader, upgraded.writer, upgraded.info
            if kind == "pop":
                assert self.pop_context is not None
                await PopSession(self.pop_context, reader, writer, peer, tls).run()
            else:
                await self._serve_smtp(reader, writer, peer, connection, task, tls)
        except asyncio.CancelledError:
            pass  # shutdown: asyncio's stream callback must not see a cancelled task
        finally:
            self.sessions.discard(task)
            self.services.connections.close(connection)

    async def _serve_smtp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          peer: tuple[str, str], connection: Connection,
                          task: asyncio.Task[None], tls: TlsInfo | None) -> None:
        if self.dnsbl is not None and peer[0]:
            result = await self.dnsbl.check(peer[0])
            result.log()
            if not result.allowed:
                self.services.observer.rejected("dnsbl")
                log.info("smtp connection closed: blocked by dnsbl: %s", display_address(*peer))
                writer.close()
                return
        if not self.smtp_enabled:
            self.services.observer.rejected("smtp_disabled")
        session = self.smtp_sessions[task] = SmtpSession(self.smtp_context, reader, writer,
                                                         peer, tls)
        try:
            await session.run()
        finally:
            connection.tls = session.protocol.secure
            del self.smtp_sessions[task]

    def stop_listening(self) -> None:
        for server in self.servers:
            server.close()
        self.services.connections.remove_listeners()
        if self.admin is not None:
            self.admin.close_all()

    def stop_idle_sessions(self) -> None:
        """At shutdown: SMTP sessions between transactions get 421 and end now."""
        for task, session in self.smtp_sessions.items():
            if session.idle:
                task.cancel()

    def listening(self) -> list[str]:
        return [spec.display() for spec, _ in self.listeners]

    async def stop_forwarding(self) -> None:
        if self.forwarder is not None:
            await self.forwarder.stop()


def _peer_of(writer: asyncio.StreamWriter) -> tuple[str, str]:
    return address_pair(writer.get_extra_info("peername"))


def _local_of(writer: asyncio.StreamWriter) -> tuple[str, str]:
    return address_pair(writer.get_extra_info("sockname"))

