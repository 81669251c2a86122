"""Group commit: make new spool files durable while sharing the cost between sessions.

A message is durable in two steps: first its content and envelope files are flushed,
then, after the rename that publishes it, its directory entry.  Both steps are batched:
a flush that starts after a session asked for it covers that session and every other
one that asked meanwhile, so concurrent sessions share each flush.

On Linux the file step is one ``syncfs(2)`` of the spool's file system per batch (one
journal commit for any number of messages, where per-file ``fdatasync`` costs one
each); elsewhere each message's files are flushed with ``fdatasync`` in a thread pool.
The directory step is one ``fsync`` of the directory per batch.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class GroupCommitter:
    """Runs blocking flushes off the event loop and batches them between sessions."""

    def __init__(self, workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fsync")
        self._waiting: dict[tuple[Callable[[str], None], str], list[asyncio.Future[None]]] = {}
        self._busy: set[tuple[Callable[[str], None], str]] = set()
        self._directory_fds: dict[str, int] = {}

    async def run(self, work: Callable[[], None]) -> None:
        """Run blocking work in the pool."""
        await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Call a blocking function in the pool and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def flush_files(self, directory: str, fallback: Callable[[], None]) -> None:
        """Return once files written under ``directory`` before this call are on disk.

        ``fallback`` flushes the caller's own files where ``syncfs`` is unavailable.
        """
        if _SYNCFS is None:
            await self.run(fallback)
        else:
            await self._batched(self._sync_filesystem, directory)

    def _sync_filesystem(self, directory: str) -> None:
        fd = self._directory_fds.get(directory)
        if fd is None:
            fd = self._directory_fds[directory] = os.open(directory,
                                                          os.O_RDONLY | os.O_DIRECTORY)
        sync_filesystem(fd)

    async def sync_directory(self, directory: str) -> None:
        """Return once an ``fsync`` of ``directory`` that started after this call is done."""
        await self._batched(fsync_directory, directory)

    async def _batched(self, flush: Callable[[str], None], path: str) -> None:
        key = (flush, path)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if key not in self._busy:
            self._start(key)
        await future

    def _start(self, key: tuple[Callable[[str], None], str]) -> None:
        batch = self._waiting.pop(key, [])
        if not batch:
            return
        self._busy.add(key)
        flush, path = key
        done = asyncio.get_running_loop().run_in_executor(self._pool, flush, path)

        def finish(task: asyncio.Future[None]) -> None:
            self._busy.discard(key)
            error = task.exception()
            for future in batch:
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
            self._start(key)

        done.add_done_callback(finish)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for fd in self._directory_fds.values():
            os.close(fd)
        self._directory_fds.clear()
