"""``msgid:``: add a ``Message-ID`` header to a message that has none."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import BinaryIO

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult
from emailrelay.spool.store import replace_file

HEADER_LINE_LIMIT = 10000
_generator = itertools.count(0)


class FormatError(ValueError):
    pass


def message_id_of(content: BinaryIO) -> str | None:
    """The ``Message-ID`` header's value, reading header lines from a binary file until
    the blank line; None when there is none."""
    while True:
        line = content.readline(HEADER_LINE_LIMIT + 1)
        if len(line) > HEADER_LINE_LIMIT or (line and not line.endswith(b"\n")):
            raise FormatError("format error")
        if not line:
            raise FormatError("format error")  # no end of the headers
        if len(line.rstrip(b"\n")) <= 1:
            return None  # the blank line (CRLF or LF)
        name, colon, value = line.partition(b":")
        if colon and name.lower() == b"message-id":
            return value.strip().decode("ascii", "replace")


def has_message_id(content: BinaryIO) -> bool:
    return message_id_of(content) is not None


def new_message_id(domain: str) -> str:
    now = time.time()
    return f"<{int(now)}.{int(now % 1 * 1e6):06d}.{os.getpid()}.{next(_generator)}@{domain}>"


class MessageIdFilter:
    def __init__(self, config: FilterConfig) -> None:
        self.id = "msgid:"
        self.config = config

    async def run(self, job: FilterJob) -> FilterResult:
        await asyncio.to_thread(self._add, job)
        return OK

    def _add(self, job: FilterJob) -> None:
        with open(job.content, "rb") as content:
            if has_message_id(content):
                return
            content.seek(0)
            with replace_file(job.content) as out:
                out.write(f"Message-ID: {new_message_id(self.config.domain)}\r\n".encode())
                while block := content.read(1 << 16):
                    out.write(block)

    def close(self) -> None:
        pass
