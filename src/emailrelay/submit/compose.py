"""Turn the command line and the input into spool messages, as E-MailRelay 2.6 does.

The header section comes from ``--content`` lines and then the input, up to the blank
line; the envelope addresses from ``--from``/``--to`` or else from the headers; the
``-d``, ``-I``, ``-F`` and ``-t`` headers are put on top.  Every message is then written
through :mod:`emailrelay.spool.store` (the same names, flushes and locks as the SMTP
server), with the body streamed from the input into all of them at once.  Nothing is
published unless the whole input was read without error.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from typing import BinaryIO

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import NewMessage, Spool
from emailrelay.submit import addresses
from emailrelay.submit.addresses import Mailbox
from emailrelay.submit.headers import (
    HeaderSection,
    LineEndings,
    MessageError,
    decode,
    encode,
    read_header_lines,
)
from emailrelay.submit.options import SubmitArgs
from emailrelay.util import xtext

log = logging.getLogger("emailrelay")

CHUNK = 1 << 16
CLIENT = "127.0.0.1"  # the envelope's client address for local submissions, as E-MailRelay


@dataclass
class Input:
    """Where the message text comes from (None: nowhere)."""

    stream: BinaryIO | None
    name: str  # for messages: "standard input" or the file name
    tty: bool = False


@dataclass
class Draft:
    """One message to write: its recipients and its header section."""

    recipients: list[str]
    headers: HeaderSection


def content_lines(values: list[str]) -> tuple[list[str], list[str]]:
    """Decode ``--content`` values into header lines and body lines.

    The first empty value (E-MailRelay counts any value of one character or less as
    empty) ends the headers; the values after it are body lines.
    """
    headers: list[str] = []
    body: list[str] = []
    in_body = False
    for number, value in enumerate(values, 1):
        line = "" if len(value) <= 1 else _base64_line(value, number)
        if not line and not in_body:
            in_body = True
            continue
        (body if in_body else headers).append(line)
    return headers, body


def _base64_line(value: str, number: int) -> str:
    try:
        data = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MessageError(f"invalid base64 in --content value {number}: \"{value}\"") from None
    if any(c in data for c in b"\r\n\0"):
        raise MessageError(f"--content value {number} decodes to more than one line (or "
                           "holds a NUL): give one --content per line")
    return decode(data)


class Submission:
    def __init__(self, args: SubmitArgs, source: Input) -> None:
        self.args = args
        self.source = source
        self.headers = HeaderSection()
        self.body_lines: list[str] = []
        self.sender = ""
        self.recipients: list[str] = []
        self.bcc: list[Mailbox] = []

    # -- reading --------------------------------------------------------------------------

    def read_headers(self) -> None:
        header_lines, self.body_lines = content_lines(self.args.content_values())
        self.headers.add_lines(header_lines, lambda i: f"--content line {i + 1}")
        if self.source.stream is not None and not self.args.flag("body"):
            lines = read_header_lines(self.source.stream, self.source.tty, self.source.name)
            self.headers.add_lines(lines, lambda i: f"line {i + 1} of {self.source.name}")
        log.debug("submit: %d header fields", len(self.headers.fields))

    def choose_addresses(self) -> None:
        self.sender = self.args.value("from") or self._sender_from_headers()
        self.recipients = list(self.args.recipients)
        if not self.recipients:
            self.recipients = [m.address for m in self._mailboxes("To", "Cc")]
            self.bcc = self._mailboxes("Bcc")
        log.info("submit: from <%s> to %s%s", self.sender or "anonymous",
                 ",".join(self.recipients) or "-",
                 f" bcc {','.join(m.address for m in self.bcc)}" if self.bcc else "")

    def _mailboxes(self, *names: str) -> list[Mailbox]:
        found: list[Mailbox] = []
        for name in names:  # all To: fields, then Cc:, as E-MailRelay orders them
            for index, header in enumerate(self.headers.fields):
                if header.is_one_of([name]):
                    found += addresses.parse_field(header, f"header field {index + 1}")
        return found

    def _sender_from_headers(self) -> str:
        """The only From: mailbox, else the only Sender:, else the first of either."""
        senders = self._mailboxes("Sender")
        authors = self._mailboxes("From")
        for candidates in (authors if len(authors) == 1 else [],
                           senders if len(senders) == 1 else [], authors, senders):
            if candidates:
                return candidates[0].address
        return ""

    # -- editing --------------------------------------------------------------------------

    def add_headers(self) -> None:
        """The -d, -I, -F and -t headers, each put on top in that order."""
        h, args = self.headers, self.args
        if args.flag("content-date") and not h.has("Date"):
            h.insert_top(f"Date: {formatdate(localtime=True)}")
        domain = args.value("content-message-id")
        if domain is not None and not h.has("Message-ID"):
            h.insert_top(f"Message-ID: {make_msgid(domain=domain or 'local')}")
        if args.flag("content-from"):
            h.remove("From", "Sender")
            h.insert_top(f"From: {self.sender or 'anonymous:;'}")
        if args.flag("content-to"):
            if not self.recipients:
                raise MessageError("--content-to needs envelope recipients (--to or "
                                   "arguments, or To: or Cc: headers)")
            h.remove("To", "Cc", "Bcc")
            h.insert_top(f"To: {','.join(self.recipients)}")

    def drafts(self) -> list[Draft]:
        """The messages to write.

        Bcc: fields never reach the To: and Cc: recipients: without --bcc-split every
        recipient gets one copy without them (RFC 5322 section 3.6.3, first method);
        with it each Bcc: recipient gets a copy naming only themselves.
        """
        if not self.recipients and not self.bcc:
            raise MessageError("no recipients: give --to or arguments, or To:, Cc: or Bcc: "
                               "headers")
        if not self.headers.fields:
            raise MessageError("not an RFC 5322 message: there are no header fields (use "
                               "--content, or -d, -F and -t to add some)")
        addresses.check(self.sender or "anonymous", "sender")
        for address in self.recipients + [m.address for m in self.bcc]:
            addresses.check(address, "recipient")
        public = self.headers.without("Bcc")
        if not self.args.flag("bcc-split") or len(self.bcc) <= 1:
            return [Draft(self.recipients + [m.address for m in self.bcc], public)]
        drafts = [Draft(self.recipients, public)] if self.recipients else []
        for mailbox in self.bcc:
            own = self.headers.replaced("Bcc", f"Bcc: {mailbox.display}")
            drafts.append(Draft([mailbox.address], own))
        return drafts

    # -- writing --------------------------------------------------------------------------

    def write(self, spool: Spool, drafts: list[Draft],
              on_commit: Callable[[NewMessage], None]) -> None:
        """Write every draft, stream the body into all of them, then commit each.

        Until the commits, any error (bad input, a full disk, ^C) removes every file.
        """
        messages: list[NewMessage] = []
        endings = LineEndings()
        try:
            for draft in drafts:
                message = spool.new_message(self._envelope(draft))
                messages.append(message)
                lines = [*draft.headers.lines(), "", *self.body_lines]
                message.write(b"".join(encode(line) + b"\r\n" for line in lines))
            self._stream_body(messages, endings)
            eight_bit = endings.eight_bit or not all(
                encode(line).isascii() for line in [*self.headers.lines(), *self.body_lines])
            for message in messages:
                message.envelope.body_type = "8bit" if eight_bit else "7bit"
                message.commit_sync()
                log.info("submit: stored %s", message.content_path)
                if self.args.flag("copy"):
                    spool.copy_to_subdirectories(message.id, message.envelope)
                on_commit(message)
        except BaseException:
            for message in messages:
                message.abort()  # nothing happens to those already committed
            raise

    def _stream_body(self, messages: list[NewMessage], endings: LineEndings) -> None:
        stream = self.source.stream
        if stream is not None:
            # A terminal is read by lines so that "." can end the message.
            chunks = iter(stream.readline, b"") if self.source.tty else iter(
                lambda: stream.read(CHUNK), b"")
            for chunk in chunks:
                if self.source.tty and chunk.rstrip(b"\r\n") == b".":
                    break
                data = endings.feed(chunk)
                for message in messages:
                    message.write(data)
        tail = endings.finish()
        for message in messages:
            message.write(tail)

    def _envelope(self, draft: Draft) -> Envelope:
        sender = self.sender or "anonymous"
        return Envelope(
            from_=sender,
            to_remote=list(draft.recipients),
            authentication=self.args.value("auth") or "",
            client=CLIENT,
            mail_from_auth_in=_auth_parameter(self.args.value("from-auth-in")),
            mail_from_auth_out=_auth_parameter(self.args.value("from-auth-out")),
            utf8_mailbox_names=any(addresses.utf8_local_part(a)
                                   for a in (sender, *draft.recipients)),
        )


def _auth_parameter(value: str | None) -> str:
    """An AUTH= value for the envelope: xtext, ``<>`` when given empty, "" when not given."""
    if value is None:
        return ""
    return xtext.encode(value) if value else "<>"


def open_input(args: SubmitArgs, stdin: BinaryIO | None) -> Input:
    path = args.input_file
    if path is not None:
        try:
            stream = open(path, "rb")  # noqa: SIM115 (closed by the caller)
        except OSError as e:
            raise MessageError(f"cannot open input file \"{path}\": {e.strerror}") from None
        return Input(stream, f"\"{path}\"", os.isatty(stream.fileno()))
    if args.flag("no-stdin") or stdin is None:
        return Input(None, "")
    return Input(stdin, "standard input", stdin.isatty())


def spool_for(args: SubmitArgs) -> Spool:
    """The existing spool directory; files made by root go to the directory's owner."""
    spool = Spool(args.spool_dir, create=False)
    if os.geteuid() == 0:
        st = spool.directory.stat()
        spool.owner = (st.st_uid, st.st_gid)
    return spool
