"""Group commit: make new spool files durable while sharing the cost between sessions.

A message is durable in two steps: first its content and envelope files are flushed,
then, after the rename that publishes it, its directory entry.  Both steps are batched:
a flush that starts after a session asked for it covers that session and every other
one that asked meanwhile, so concurrent sessions share each flush.

On Linux the file step is one ``syncfs(2)`` of the spool's file system per batch (one
journal commit for any number of messages, where per-file ``fdatasync`` costs one
each); elsewhere each message's files are flushed with ``fdatasync``.  The directory
step is one ``fsync`` of the directory per batch.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


def fsync_path(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """``fsync`` a file (or, with ``directory``, a directory's entries) by name."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    fsync_path(path, directory=True)


def _libc_syncfs() -> Callable[[int], int] | None:
    # The os module has no syncfs(2) and no maintained library wraps it: call libc.
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_SYNCFS = _libc_syncfs()


def syncfs_available() -> bool:
    return _SYNCFS is not None


def sync_filesystem(fd: int) -> None:
    """Flush every file of the file system holding the open directory ``fd`` (``syncfs``).

    The kernel reports a write-back error to each descriptor once, so callers keep one
    descriptor open for the life of the process: an error anywhere since it was opened
    fails the next batch (its clients get a temporary error and send again).
    """
    assert _SYNCFS is not None
    if _SYNCFS(fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@dataclass
class _Request:
    flush: Callable[[], None] | None  # the caller's own fdatasync (None: nothing to flush)
    publish: Callable[[], None] | None  # the rename that makes it visible, if any
    future: asyncio.Future[None]
    error: BaseException | None = None


class GroupCommitter:
    """Makes spool files durable in batches, one flushing thread per spool directory.

    A cycle takes every request waiting when it starts: one ``syncfs`` for all their
    files (or each caller's ``fdatasync`` where there is no ``syncfs``), then their
    renames, then one ``fsync`` of the directory.  Requests that arrive meanwhile wait
    for the next cycle.  One cycle is two journal commits however many sessions it
    serves, and the event loop never waits for the disk.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(thread_name_prefix="spool-flush")
        self._waiting: dict[str, list[_Request]] = {}
        self._busy: set[str] = set()
        self._directory_fds: dict[str, int] = {}

    async def commit(self, directory: str, flush: Callable[[], None] | None,
                     publish: Callable[[], None] | None = None) -> None:
        """Return once ``flush``'s files are durable and ``publish`` (a rename in
        ``directory``) has happened and is durable too; raise the error if not."""
        request = _Request(flush, publish, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(directory, []).append(request)
        if directory not in self._busy:
            self._start(directory)
        try:
            await asyncio.shield(request.future)
        except asyncio.CancelledError:
            # The flushing thread may be renaming this message right now: let the cycle
            # end (it is short) before the caller cleans up after the cancellation.
            if request in self._waiting.get(directory, []):
                self._waiting[directory].remove(request)
            else:
                await asyncio.wait([request.future])
            raise

    def _start(self, directory: str) -> None:
        batch = self._waiting.pop(directory, [])
        if not batch:
            return
        self._busy.add(directory)
        done = asyncio.get_running_loop().run_in_executor(self._pool, self._cycle, directory,
                                                          batch)

        def finish(task: asyncio.Future[None]) -> None:
            self._busy.discard(directory)
            failure = task.exception()
            for request in batch:
                error = failure or request.error
                if request.future.done():
                    continue
                if error is None:
                    request.future.set_result(None)
                else:
                    request.future.set_exception(error)
            self._start(directory)

        done.add_done_callback(finish)

    def _cycle(self, directory: str, batch: list[_Request]) -> None:
        """In the flushing thread: flush, rename, flush the directory."""
        to_flush = [r for r in batch if r.flush is not None]
        if to_flush and _SYNCFS is not None:
            sync_filesystem(self._directory_fd(directory))
        else:
            for request in to_flush:
                _attempt(request, request.flush)
        published = False
        for request in batch:
            if request.publish is not None and request.error is None:
                published = _attempt(request, request.publish) or published
        if published:
            os.fsync(self._directory_fd(directory))

    def _directory_fd(self, directory: str) -> int:
        fd = self._directory_fds.get(directory)
        if fd is None:
            fd = self._directory_fds[directory] = os.open(directory,
                                                          os.O_RDONLY | os.O_DIRECTORY)
        return fd

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for fd in self._directory_fds.values():
            os.close(fd)
        self._directory_fds.clear()


def _attempt(request: _Request, step: Callable[[], None] | None) -> bool:
    """Run one request's own step; a failure belongs to that request only."""
    assert step is not None
    try:
        step()
    except OSError as e:
        request.error = e
        return False
    return True
