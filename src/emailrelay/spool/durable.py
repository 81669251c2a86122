"""Group commit: make new spool files durable while sharing the cost between sessions.

Each message needs its content and envelope files flushed (``fdatasync``) and then,
after the rename that publishes it, its directory entry flushed (``fsync`` of the
directory).  File flushes run concurrently in a thread pool so that the kernel can
merge their journal commits; directory flushes are batched: every rename done before
a directory ``fsync`` starts is covered by it, so one ``fsync`` serves a whole batch
of concurrent sessions.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupCommitter:
    """Runs blocking flushes off the event loop and batches directory flushes."""

    def __init__(self, workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fsync")
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._busy: set[str] = set()

    async def run(self, work: Callable[[], None]) -> None:
        """Run blocking work (file flushes) in the pool."""
        await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def sync_directory(self, directory: str) -> None:
        """Return once an ``fsync`` of ``directory`` that started after this call is done."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(directory, []).append(future)
        if directory not in self._busy:
            self._start(directory)
        await future

    def _start(self, directory: str) -> None:
        batch = self._waiting.pop(directory, [])
        if not batch:
            return
        self._busy.add(directory)
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._pool, fsync_directory, directory)

        def finish(task: asyncio.Future[None]) -> None:
            self._busy.discard(directory)
            error = task.exception()
            for future in batch:
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
            self._start(directory)

        done.add_done_callback(finish)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
