"""Start-up, the event loop and shutdown for all instances of one process.

The order follows E-MailRelay: check the options, set up logging, bind every listening
socket (exit code 2 if one cannot be bound), become a daemon, write the pid file,
close standard error, then serve.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from emailrelay.app.instance import Instance
from emailrelay.logs import setup as logsetup
from emailrelay.net.listen import ListenError
from emailrelay.options.parser import CommandLine
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

log = logging.getLogger("emailrelay")

EXIT_OK, EXIT_ERROR, EXIT_BIND = 0, 1, 2
SHUTDOWN_GRACE = 10.0  # seconds sessions get to finish after SIGTERM


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


class Runtime:
    def __init__(self, cl: CommandLine) -> None:
        self.cl = cl
        self.committer: GroupCommitter | None = None
        self.instances: list[Instance] = []
        self.stopping: asyncio.Event | None = None
        self.exit_code = EXIT_OK
        self.quit_when_sent = False

    def run(self) -> int:
        p = self.cl.process
        logsetup.configure(log_settings(self.cl))
        committer = GroupCommitter()
        try:
            self.instances = [Instance(s, committer) for s in self.cl.instances]
            for instance in self.instances:
                instance.open_listeners()
        except ListenError as e:
            log.error("%s", e)
            return EXIT_BIND if e.bind_failure else EXIT_ERROR
        except (SpoolError, StartupError) as e:
            log.error("%s", e)
            return EXIT_ERROR
        if not any(i.listeners or i.forwards for i in self.instances):
            print(f"{program_name()}: nothing to do", file=sys.stderr)
            return EXIT_ERROR
        self.quit_when_sent = all(i.quit_when_sent for i in self.instances)
        daemon = not p.flag("no-daemon")
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
            for instance in self.instances:
                instance.prepare_spool()
            for path in pid_files:
                write_pid_file(path)
        except (StartupError, SpoolError, OSError) as e:
            log.error("%s", e)
            if readiness is not None:
                readiness.ready(False)
            return EXIT_ERROR
        if self.quit_when_sent and not any(i.spool.ready() for i in self.instances):
            print(f"{program_name()}: no messages to send", file=sys.stderr)
            return EXIT_OK
        if p.flag("close-stderr") and not p.value("log-file"):
            logsetup.close_stderr()
        try:
            self.exit_code = asyncio.run(self._main(readiness))
        finally:
            for path in pid_files:
                remove_pid_file(path)
            committer.close()
        return self.exit_code

    async def _main(self, readiness: Readiness | None) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            for instance in self.instances:
                await instance.start()
        except OSError as e:
            log.error("%s", e)
            if readiness is not None:
                readiness.ready(False)
            return EXIT_ERROR
        if readiness is not None:
            readiness.ready(True)
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
        log.info("received signal %s: shutting down", sig.name)
        assert self.stopping is not None
        self.stopping.set()

    def _reload(self) -> None:
        log.info("received signal SIGHUP: reopening the log file")
        logsetup.reopen_files()
        for instance in self.instances:  # a minimal hook until the reload registry lands
            instance.reload()

    async def _shutdown(self) -> None:
        for instance in self.instances:
            instance.stop_listening()
        for instance in self.instances:
            await instance.stop_forwarding()
        sessions = [t for i in self.instances for t in i.sessions]
        if sessions:
            _, pending = await asyncio.wait(sessions, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
