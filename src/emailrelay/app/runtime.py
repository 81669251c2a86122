"""Start-up, the event loop and shutdown for all instances of one process.

The order follows E-MailRelay: check the options, set up logging, bind every listening
socket (exit code 2 if one cannot be bound), become a daemon, write the pid file,
close standard error, then serve.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from emailrelay.app.instance import Instance
from emailrelay.app.services import Services
from emailrelay.app.workers import WorkerChannel, WorkerPool
from emailrelay.logs import setup as logsetup
from emailrelay.net.listen import ListenError, ListenSpec, open_socket
from emailrelay.options.parser import CommandLine, make_paths_absolute
from emailrelay.process.daemon import (
    Readiness,
    StartupError,
    drop_privileges,
    program_name,
    remove_pid_file,
    write_pid_file,
)
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.store import SpoolError

if TYPE_CHECKING:
    from emailrelay.metrics.http import HttpEndpoint, Reply

log = logging.getLogger("emailrelay")

EXIT_OK, EXIT_ERROR, EXIT_BIND = 0, 1, 2


def log_settings(cl: CommandLine) -> logsetup.LogSettings:
    p = cl.process
    fields = {f.strip() for value in p.values("log-format") for f in value.split(",")}
    if p.flag("log-time"):
        fields.add("time")
    if p.flag("log-address"):
        fields.add("address")
    syslog_value = p.given.get("syslog")
    facility = syslog_value if isinstance(syslog_value, str) and syslog_value else "mail"
    return logsetup.LogSettings(
        enabled=p.flag("log"), verbose=p.flag("verbose"), debug=p.flag("debug"),
        fields=fields, log_file=p.value("log-file"),
        syslog=syslog_value is not None or not p.flag("no-syslog"), syslog_facility=facility,
        quiet_stderr=not p.flag("no-daemon") and p.flag("close-stderr"))


def startup_error(error: Exception) -> None:
    """``emailrelay: error: ...`` on standard error (and in the log), as E-MailRelay."""
    if isinstance(error, OSError) and error.strerror:
        text = f'"{error.filename}": {error.strerror}' if error.filename else error.strerror
    else:
        text = str(error)
    logsetup.startup_error(text, program_name())


class Runtime:
    def __init__(self, cl: CommandLine) -> None:
        self.cl = cl
        self.committer: GroupCommitter | None = None
        self.instances: list[Instance] = []
        self.stopping: asyncio.Event | None = None
        self.exit_code = EXIT_OK
        self.quit_when_sent = False
        self.services = Services.from_settings(cl.process)
        self.services.request_stop = lambda: self._stop("terminate command")
        self.started = time.time()
        self.metrics_socket: socket.socket | None = None
        self.metrics_spec: ListenSpec | None = None
        self.endpoint: HttpEndpoint | None = None
        self._force_stop = False
        self.pool: WorkerPool | None = None  # --workers, in the main process
        self.channel: WorkerChannel | None = None  # --workers, in a worker process
        self._background: set[asyncio.Task[None]] = set()
        self._early_reload = False

    def run(self) -> int:
        p = self.cl.process
        # Until the event loop handles SIGHUP, one must not kill us (a handler, not
        # SIG_IGN, which filter programs would inherit); one that comes while the sockets
        # already listen is acted on as soon as the loop runs.
        signal.signal(signal.SIGHUP, self._note_early_reload)
        daemon = not p.flag("no-daemon")
        if daemon:
            make_paths_absolute(self.cl, os.getcwd())  # the daemon will work in /
        logsetup.configure(log_settings(self.cl))
        committer = GroupCommitter()
        try:
            self.instances = [Instance(s, committer, self.services) for s in self.cl.instances]
            for instance in self.instances:
                instance.open_listeners()
            if p.has("metrics-port"):
                self.metrics_spec = ListenSpec("metrics", p.value("metrics-address"),
                                               p.int("metrics-port") or 0)
                self.metrics_socket = open_socket(self.metrics_spec)
        except ListenError as e:
            startup_error(e)
            return EXIT_BIND if e.bind_failure else EXIT_ERROR
        except (SpoolError, StartupError) as e:
            startup_error(e)
            return EXIT_ERROR
        if not any(i.listeners or i.forwards for i in self.instances):
            print(f"{program_name()}: nothing to do", file=sys.stderr)
            return EXIT_OK  # as E-MailRelay: a message, not a failure
        self.quit_when_sent = all(i.quit_when_sent for i in self.instances)
        readiness = Readiness() if daemon else None
        if readiness is not None:
            committer.close()  # threads do not survive fork: make a new pool afterwards
            readiness.become_daemon()
            committer = GroupCommitter()
            for instance in self.instances:
                instance.committer = instance.smtp_context.committer = committer
        self.committer = committer
        pid_files = p.values("pid-file")[:1]
        try:
            drop_privileges(p.value("user") or "daemon",
                            [i.spool.directory for i in self.instances])
            self.services.reloads.warn_unreadable(p.value("user") or "daemon")
            for instance in self.instances:
                instance.prepare_spool()
            for path in pid_files:
                write_pid_file(path)
        except (StartupError, SpoolError, OSError) as e:
            startup_error(e)
            if readiness is not None:
                readiness.ready(False)
            return EXIT_ERROR
        if self.quit_when_sent and not any(i.spool.ready() for i in self.instances):
            print(f"{program_name()}: no messages to send", file=sys.stderr)
            return EXIT_OK
        if self._start_workers():  # in a worker process from here on
            readiness, pid_files = None, []
        if p.flag("close-stderr") and not p.value("log-file"):
            logsetup.close_stderr()
        try:
            self.exit_code = asyncio.run(self._main(readiness))
        finally:
            for path in pid_files:
                remove_pid_file(path)
            committer.close()
        return self.exit_code

    def _start_workers(self) -> bool:
        """--workers: fork the SMTP worker processes; True in a worker."""
        count = self.cl.process.int("workers") or 1
        if count < 2 or not any(spec.kind == "smtp" for i in self.instances
                                for spec, _ in i.listeners):
            return False
        self.pool = WorkerPool(self.instances, count)
        self.channel = self.pool.fork_all()
        if self.channel is None:
            for index, instance in enumerate(self.instances):
                instance.on_smtp_switch = functools.partial(self.pool.set_smtp_enabled, index)
            return False
        self.pool = None
        self.channel.attach(self.instances)
        if self.metrics_socket is not None:
            self.metrics_socket.close()
            self.metrics_socket = None
        return True

    async def _main(self, readiness: Readiness | None) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        if self._early_reload:
            loop.call_soon(self._reload)
        try:
            for instance in self.instances:
                await instance.start()
            await self._start_endpoint()
        except OSError as e:
            startup_error(e)
            if readiness is not None:
                readiness.ready(False)
            return EXIT_ERROR
        if readiness is not None:
            readiness.ready(True)
        if self.pool is not None:
            self.pool.start(self.services.observer.smtp_count)
        if self.channel is not None:
            watcher = asyncio.create_task(self.channel.watch(self.instances, self._stop_once))
            self._background.add(watcher)
        for instance in self.instances:
            instance.start_forwarding()
        if self.quit_when_sent:
            return await self._forward_and_quit()
        await self.stopping.wait()
        await self._shutdown()
        return self.exit_code

    async def _forward_and_quit(self) -> int:
        """--as-client: one forwarding run; exit 0 only if nothing is left to send."""
        assert self.stopping is not None
        runs = asyncio.gather(*(i.forwarder.run_once() for i in self.instances
                                if i.forwarder is not None))
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({runs, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not runs.done():
            runs.cancel()
            await asyncio.gather(runs, return_exceptions=True)
            return EXIT_ERROR
        stop.cancel()
        return EXIT_OK if all(report.complete for report in runs.result()) else EXIT_ERROR

    def _request_stop(self, sig: signal.Signals) -> None:
        self._stop(f"received signal {sig.name}")

    def _stop_once(self, why: str) -> None:
        """A stop that a second request does not hurry (a worker hears of the shutdown
        from its main process and often from a signal too)."""
        assert self.stopping is not None
        if not self.stopping.is_set():
            self._stop(why)

    def _stop(self, why: str) -> None:
        assert self.stopping is not None
        if self.stopping.is_set():
            log.info("%s: stopping now", why)
            self._force_stop = True
            return
        log.info("%s: shutting down", why)
        self.services.stopping = True
        self.stopping.set()

    def _note_early_reload(self, *_: object) -> None:
        self._early_reload = True

    def _reload(self) -> None:
        """SIGHUP: reopen the log file, then reload what features registered."""
        log.info("received signal SIGHUP: reopening the log file and reloading")
        logsetup.reopen_files()
        self.services.reloads.reload_all()
        if self.pool is not None:
            self.pool.signal_all(signal.SIGHUP)

    async def _start_endpoint(self) -> None:
        """--metrics-port: /metrics and /health (the socket was bound before forking)."""
        if self.metrics_socket is None:
            return
        # Imported here: HTTP is only needed when the endpoint is on.
        from emailrelay.metrics.health import health_document
        from emailrelay.metrics.http import HttpEndpoint, json_reply, metrics_reply

        metrics = self.services.observer.metrics
        assert metrics is not None  # made with the option

        async def scrape() -> Reply:
            return metrics_reply(await asyncio.to_thread(metrics.exposition))

        async def health() -> Reply:
            return json_reply(*await asyncio.to_thread(
                health_document, self.instances, self.services, self.started))

        self.endpoint = HttpEndpoint(self.metrics_socket, {"/metrics": scrape,
                                                           "/health": health})
        await self.endpoint.start()
        assert self.metrics_spec is not None  # made with the socket
        log.info("metrics server on %s", self.metrics_spec.display())

    async def _shutdown(self) -> None:
        """Stop accepting, give sessions the grace period, then end what is left.

        Sessions waiting for a command between transactions get "421 service shutting
        down" at once; those in the middle of one may finish it.  A session cut short
        loses only its unacknowledged message (its files are removed).
        """
        grace = float(self.cl.process.int("shutdown-grace") or 0)
        workers = asyncio.ensure_future(self.pool.wait(grace + 2.0)) if self.pool else None
        for instance in self.instances:
            instance.stop_listening()
        for instance in self.instances:
            await instance.stop_forwarding()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            for instance in self.instances:
                instance.stop_idle_sessions()
            sessions = [t for i in self.instances for t in i.sessions]
            remaining = deadline - loop.time()
            if not sessions or remaining <= 0 or self._force_stop:
                break
            await asyncio.wait(sessions, timeout=min(remaining, 0.1))
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=1.0)
        if self.endpoint is not None:
            self.endpoint.close()
        if workers is not None:
            await workers
