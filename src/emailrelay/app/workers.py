"""``--workers N``: extra processes that serve SMTP on the same listening sockets.

Python runs one thread at a time, so one process uses one core.  With ``--workers``
the main process forks ``N - 1`` workers after binding and dropping privileges; the
kernel spreads incoming SMTP connections over all of them.  Only SMTP is served by the
workers: POP3, the admin interface, metrics and forwarding stay in the main process.
The spool needs nothing more (file names carry the process id and every state change
is an atomic rename under an ``flock``).

A worker tells the main process what it did over a pipe, one line per event:

* ``forward <instance> <reason>``: a client disconnected (``--forward-on-disconnect``)
  or a filter asked for a rescan: the main process forwards;
* ``count <instance> <name> <detail>``: a message stored or rejected, for the metrics
  and the admin interface's ``notify``.

The main process writes ``smtp <instance> enable|disable`` lines the other way (the
admin ``smtp`` command).  A worker whose main process has gone sees the end of that
pipe and shuts down; a worker that dies is reported, and the others go on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from emailrelay.app.instance import Instance

log = logging.getLogger("emailrelay")


@dataclass
class Worker:
    """The main process's end of one worker."""

    pid: int
    events: int  # read end: the worker's event lines
    control: int  # write end: smtp enable/disable; its end tells the worker we are gone


class WorkerChannel:
    """The worker's end: sends its events to the main process."""

    def __init__(self, events: int, control: int) -> None:
        self.events = events
        self.control = control

    def send(self, *words: str) -> None:
        line = " ".join(w.replace(" ", "_").replace("\n", "_") or "-" for w in words) + "\n"
        with contextlib.suppress(OSError):  # the main process is gone: we stop soon
            os.write(self.events, line.encode("utf-8", "replace"))

    def attach(self, instances: list[Instance]) -> None:
        """Serve SMTP only, and report to the main process."""
        for index, instance in enumerate(instances):
            tag = str(index)
            instance.keep_listeners("smtp")
            if instance.forwarder is not None:
                if instance.settings.flag("forward-on-disconnect"):
                    instance.smtp_context.on_disconnect = self._forward(tag, "client disconnect")
                if instance.filters is not None:
                    instance.filters.request_forward = self._forward_reason(tag)
                instance.forwarder = None
                instance.forwarding = None
            instance.smtp_context.on_count = self._count(tag)

    def _forward(self, tag: str, reason: str) -> Callable[[], None]:
        return lambda: self.send("forward", tag, reason)

    def _forward_reason(self, tag: str) -> Callable[[str], None]:
        return lambda reason: self.send("forward", tag, reason)

    def _count(self, tag: str) -> Callable[[str, str], None]:
        return lambda name, detail: self.send("count", tag, name, detail)

    async def watch(self, instances: list[Instance], stop: Callable[[str], None]) -> None:
        """Apply the main process's commands; stop when it stops or has gone."""
        reader = await _line_reader(self.control)
        while line := await reader.readline():
            words = line.decode("utf-8", "replace").split()
            if len(words) == 3 and words[0] == "smtp" and words[1].isdigit() and int(
                    words[1]) < len(instances):
                instances[int(words[1])].smtp_enabled = words[2] == "enable"
        stop("the main process is stopping")


class WorkerPool:
    """The main process's side: forks, watches and replaces the workers."""

    def __init__(self, instances: list[Instance], count: int) -> None:
        self.instances = instances
        self.count = count
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    def fork_all(self) -> WorkerChannel | None:
        """Fork the workers; returns the channel in a worker, None in the main process."""
        for _ in range(self.count - 1):
            channel = self._fork()
            if channel is not None:
                return channel
        return None

    def _fork(self) -> WorkerChannel | None:
        events_read, events_write = os.pipe()
        control_read, control_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(events_read)
            os.close(control_write)
            for worker in self.workers.values():  # siblings' pipes are not ours
                os.close(worker.events)
                os.close(worker.control)
            self.workers.clear()
            return WorkerChannel(events_write, control_read)
        os.close(events_write)
        os.close(control_read)
        self.workers[pid] = Worker(pid, events_read, control_write)
        return None

    def start(self, observer_count: Callable[[str, str], None]) -> None:
        """In the main process's event loop: listen to every worker."""
        self._observer_count = observer_count
        for worker in list(self.workers.values()):
            self._listen(worker)
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self._reap)

    def _listen(self, worker: Worker) -> None:
        task = asyncio.create_task(self._read_events(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_events(self, worker: Worker) -> None:
        reader = await _line_reader(worker.events)
        while line := await reader.readline():
            self._dispatch(line.decode("utf-8", "replace").split())

    def _dispatch(self, words: list[str]) -> None:
        if len(words) < 3 or not words[1].isdigit() or int(words[1]) >= len(self.instances):
            log.warning("worker: ignoring a malformed event: %s", " ".join(words)[:100])
            return
        instance = self.instances[int(words[1])]
        if words[0] == "forward" and instance.forwarder is not None:
            instance.forwarder.request_forward(words[2].replace("_", " "))
        elif words[0] == "count" and len(words) == 4:
            self._observer_count(words[2], "" if words[3] == "-" else words[3])

    def set_smtp_enabled(self, index: int, enabled: bool) -> None:
        line = f"smtp {index} {'enable' if enabled else 'disable'}\n".encode()
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                os.write(worker.control, line)

    def signal_all(self, sig: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self) -> None:
        # waitpid on each worker only: waitpid(-1) would take the exit status of a
        # filter program that asyncio is waiting for.
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            worker = self.workers.pop(pid)
            for fd in (worker.events, worker.control):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not self.stopping:
                log.error("worker process %d stopped unexpectedly (%s): the other processes "
                          "go on serving", pid, _describe(status))

    async def wait(self, timeout: float) -> None:
        """At shutdown: tell the workers (they see their pipe close), give them
        ``timeout`` seconds, then kill what is left."""
        self.stopping = True
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                os.close(worker.control)
            worker.control = -1
        deadline = asyncio.get_running_loop().time() + timeout
        while self.workers and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            self._reap()
        self.signal_all(signal.SIGKILL)


async def _line_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(fd, "rb", buffering=0, closefd=False))
    return reader


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
