"""Running a helper program (a filter or an address verifier) as E-MailRelay does.

The program is executed directly (no shell) with only ``PATH`` and ``IFS`` in its
environment, standard input and standard error on ``/dev/null`` and standard output on
a pipe.  It gets its own process group, so that a timeout can stop it together with
anything it started.  Only the first :data:`OUTPUT_LIMIT` bytes of its output are
kept: the rest is read and thrown away, so a program that floods its output neither
blocks nor grows the relay's memory.  The program runs as the user the relay runs as
(the relay gives up root at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emailrelay.options.parser import app_dir

MINIMAL_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "IFS": " \t\n"}
OUTPUT_LIMIT = 8192  # E-MailRelay reads "the first few thousand characters"
READ_SIZE = 1 << 16
EXIT_GRACE = 1.0  # seconds to collect output once the program has exited
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL at a timeout


@dataclass(frozen=True)
class ChildResult:
    exit_code: int | None  # negative: killed by that signal; None: timed out or not run
    output: bytes = b""  # the start of its standard output
    timed_out: bool = False
    exec_error: str | None = None  # why the program could not be started


class _CappedPipe:
    """Reads a pipe to its end without blocking the loop, keeping only the start."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.data = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def close(self) -> None:
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.done.done():
            self.done.set_result(None)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the program's process group, then SIGKILL whatever is left."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), KILL_GRACE)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


async def run_program(argv: Sequence[str], timeout: float | None, *,
                      output_limit: int = OUTPUT_LIMIT) -> ChildResult:
    """Run ``argv`` to completion or until ``timeout`` seconds (0 or None: no limit)."""
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd,
            stderr=asyncio.subprocess.DEVNULL, env=MINIMAL_ENVIRONMENT, start_new_session=True,
            close_fds=True)
    except OSError as e:
        os.close(read_fd)
        return ChildResult(None, exec_error=e.strerror or str(e))
    finally:
        os.close(write_fd)
    pipe = _CappedPipe(read_fd, output_limit)
    try:
        try:
            await asyncio.wait_for(process.wait(), timeout or None)
        except TimeoutError:
            await _stop_group(process)
            return ChildResult(None, bytes(pipe.data), timed_out=True)
        # Take what the program wrote; do not wait for children that kept the pipe open.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pipe.done), EXIT_GRACE)
        return ChildResult(process.returncode, bytes(pipe.data))
    except BaseException:
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGKILL)
        raise
    finally:
        pipe.close()


def program_path(text: str) -> str:
    """A program option value as an absolute path (``@app`` is the program's directory)."""
    if not text:
        raise ValueError("empty file path")
    if text.startswith("@app"):
        return app_dir() + text[4:]
    # Made absolute now: the daemon later changes directory to /.
    return text if os.path.isabs(text) else str(Path.cwd() / text)


def program_warnings(path: str, what: str) -> list[str]:
    """E-MailRelay's start-up warnings about a program that cannot be right."""
    if not os.path.exists(path):
        return [f"{what} program does not exist: {path}"]
    if os.path.isdir(path):
        return [f"invalid program: {path}"]
    return []
