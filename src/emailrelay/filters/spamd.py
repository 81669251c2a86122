"""``spam:`` and ``spam-edit:``: SpamAssassin's spamd protocol.

:class:`SpamdResponse` is the sans-I/O reader of spamd's answer; :class:`SpamFilter`
sends each message on a fresh connection.  Both forms use ``PROCESS``: ``spam:``
rejects a message spamd calls spam and keeps the content as it was, ``spam-edit:``
always accepts and replaces the content with spamd's edited copy (with its
``X-Spam-*`` headers).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult, failure
from emailrelay.net.request_client import RequestError, close_quietly, connect, parse_endpoint
from emailrelay.spool.store import replace_file
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.filters")

BLOCK = 10240
HEADER_LIMIT = 8192  # longest header line accepted from spamd


class SpamdError(Exception):
    pass


def request_head(content_length: int) -> bytes:
    return (f"PROCESS SPAMC/1.4\r\nContent-length: {content_length}\r\n\r\n").encode()


class SpamdResponse:
    """Feed spamd's answer; the body goes to ``body_sink`` (if any) as it arrives."""

    def __init__(self, body_sink: Callable[[bytes], None] | None = None) -> None:
        self.body_sink = body_sink
        self.status = ""
        self.spam = ""  # the Spam: header value, e.g. "True ; 6.1 / 5.0"
        self.content_length: int | None = None
        self.body_size = 0
        self._buffer = bytearray()
        self._in_body = False

    @property
    def headers_done(self) -> bool:
        return self._in_body

    @property
    def complete(self) -> bool:
        return self._in_body and self.content_length is not None and \
            self.body_size >= self.content_length

    @property
    def verdict(self) -> str:
        """The Spam: value when spamd calls the message spam, else ""."""
        return "" if self.spam.lower().startswith("false") else self.spam

    def feed(self, data: bytes) -> None:
        if self._in_body:
            self._body(data)
            return
        self._buffer += data
        while not self._in_body:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > HEADER_LIMIT:
                    raise SpamdError("invalid response: header line too long")
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[: end + 1]
            self._line(line)
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest:
            self._body(rest)

    def _line(self, line: str) -> None:
        if not self.status:
            words = line.split()
            if len(words) < 2 or not words[0].startswith("SPAMD/") or words[1] != "0":
                raise SpamdError(f"invalid response: {printable(line)}")
            self.status = line
            return
        if line == "":
            if not self.content_length:
                raise SpamdError("invalid response headers")
            self._in_body = True
            return
        name, _, value = line.partition(":")
        if name.strip().lower() == "spam":
            self.spam = value.strip()
        elif name.strip().lower() == "content-length":
            try:
                self.content_length = int(value.strip())
            except ValueError:
                raise SpamdError("invalid response headers") from None

    def _body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.body_sink is not None:
            self.body_sink(data)


class SpamFilter:
    def __init__(self, address: str, config: FilterConfig, *, edit: bool) -> None:
        self.endpoint = parse_endpoint(address)
        self.id = str(self.endpoint)
        self.config = config
        self.edit = edit

    async def run(self, job: FilterJob) -> FilterResult:
        prefix = f"{self.config.kind} [{'spam-edit' if self.edit else 'spam'}:{self.id}]"
        try:
            verdict = await asyncio.wait_for(self._check(job), self.config.timeout or None)
        except TimeoutError:
            reason = f"no response from {self.endpoint} after {self.config.timeout:g}s"
            log.warning("%s: spamd interaction failed: %s", prefix, reason)
            return failure("rejected", reason)
        except (SpamdError, RequestError, OSError) as e:
            log.warning("%s: spamd interaction failed: %s", prefix, e)
            return failure("rejected", printable(str(e)))
        log.info("%s: [%s]: %s", prefix, job.message_id,
                 f"spam: [{printable(verdict)}]" if verdict else "not spam")
        if verdict and not self.edit:
            return failure("rejected", f"spam: {printable(verdict)}")
        return OK

    async def _check(self, job: FilterJob) -> str:
        reader, writer = await connect(self.endpoint, self.config.timeout)
        try:
            with open(job.content, "rb") as content:
                size = os.fstat(content.fileno()).st_size
                writer.write(request_head(size))
                while block := content.read(BLOCK):
                    writer.write(block)
                    await writer.drain()
            await writer.drain()
            if self.edit:
                with replace_file(Path(job.content)) as edited:
                    response = await self._read(reader, edited.write)
            else:
                response = await self._read(reader, None)
            return response.verdict
        finally:
            close_quietly(writer)

    async def _read(self, reader: asyncio.StreamReader,
                    sink: Callable[[bytes], object] | None) -> SpamdResponse:
        response = SpamdResponse(sink)  # type: ignore[arg-type]
        while not response.complete:
            data = await reader.read(1 << 16)
            if not data:
                break
            response.feed(data)
        if not response.headers_done:
            raise SpamdError("connection closed before the response was complete")
        if response.content_length != response.body_size:
            raise SpamdError("incorrect content length in spam response")
        return response

    def close(self) -> None:
        pass
