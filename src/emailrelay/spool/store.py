"""The spool directory: the one place that knows file names, suffixes and renames.

A message is two files, ``emailrelay.<pid>.<time>.<seq>.content`` and the envelope,
whose suffix is its state:

=====================  =====================================================
``.envelope.new``      being written; never acknowledged, never forwarded
``.envelope``          ready to forward
``.envelope.busy``     locked by a forwarder (or a filter run)
``.envelope.bad``      failed; the reason is appended to the envelope
=====================  =====================================================

Writers and lockers also hold an ``flock`` on the envelope for as long as the state
is theirs, so that a later process can tell a live owner from a dead one.  Locking
takes the ``flock`` before the rename to ``.busy``, so a ``.busy`` envelope whose
``flock`` can be taken belongs to nobody.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from emailrelay.spool import envelope as envelope_format
from emailrelay.spool.durable import GroupCommitter, fsync_directory, fsync_path
from emailrelay.spool.envelope import Envelope, EnvelopeError

log = logging.getLogger("emailrelay.spool")

PREFIX = "emailrelay."
CONTENT = ".content"
ENVELOPE = ".envelope"
NEW = ".new"
BUSY = ".busy"
BAD = ".bad"
ORPHAN = ".orphan"
TMP = ".tmp"

FILE_MODE = 0o600
DIR_MODE = 0o700
ORPHAN_AGE = 3600.0  # seconds before an unexplained content file is set aside
NAME_MAX = 255  # bytes in a directory name

_sequence = itertools.count(1)
_maildir_sequence = itertools.count(0)


class SpoolError(Exception):
    """The spool directory cannot be used."""


class MailboxNameError(ValueError):
    """A name that cannot be a spool subdirectory (it could escape the spool)."""


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # files of "ours" found at start-up are from a previous life
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


def _pid_of(message_id: str) -> int | None:
    parts = message_id.split(".")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def valid_mailbox_name(name: str) -> bool:
    """True for a name that is safe as one spool subdirectory: printable, no ``/``,
    no ``..``, not a dot-file and not too long."""
    return (bool(name) and name.isprintable() and "/" not in name and ".." not in name
            and not name.startswith(".")
            and len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX)


def _claim_ready(path: Path) -> int | None:
    """Open and ``flock`` a ready envelope: None if it is gone or another process has it.

    Forwarders take the same ``flock`` before renaming an envelope to ``.busy``, so
    while the descriptor is open nobody can start forwarding (or delete) the message.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


def is_tmpfs(path: Path) -> bool:
    """True when ``path`` lives on a RAM file system (tmpfs or ramfs)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    real = str(path.resolve())
    best, fstype = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, fields[2]
    return fstype in ("tmpfs", "ramfs")


class NewMessage:
    """A message being received: content streams in, then :meth:`commit` publishes it."""

    def __init__(self, spool: Spool, message_id: str, envelope: Envelope) -> None:
        self.spool = spool
        self.id = message_id
        self.envelope = envelope
        self.size = 0
        self._content_fd: int | None = None
        self._envelope_fd: int | None = None
        self._finished = False  # published or failed: abort() must not touch it
        self._open()

    @property
    def content_path(self) -> Path:
        return self.spool.content_path(self.id)

    @property
    def new_envelope_path(self) -> Path:
        return self.spool.envelope_path(self.id, NEW)

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._envelope_fd = os.open(self.new_envelope_path, flags, FILE_MODE)
        _try_flock(self._envelope_fd)
        try:
            self._content_fd = os.open(self.content_path, flags, FILE_MODE)
            if self.spool.owner is not None:
                for fd in (self._envelope_fd, self._content_fd):
                    os.fchown(fd, *self.spool.owner)
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes | memoryview) -> None:
        """Append content bytes (synchronously: page-cache writes are quick)."""
        assert self._content_fd is not None, "message already finished"
        _write_all(self._content_fd, data)
        self.size += len(data)

    def _write_envelope(self) -> None:
        assert self._content_fd is not None and self._envelope_fd is not None
        _write_all(self._envelope_fd, self.envelope.to_bytes())
        os.close(self._content_fd)
        self._content_fd = None

    def _flush_files(self) -> None:
        """``fdatasync`` this message's files (where one ``syncfs`` does not do it)."""
        for path in (self.content_path, self.new_envelope_path):
            fsync_path(path)

    def _publish(self) -> None:
        os.rename(self.new_envelope_path, self.spool.envelope_path(self.id))
        self._finished = True
        assert self._envelope_fd is not None
        os.close(self._envelope_fd)  # releases the flock
        self._envelope_fd = None

    async def prepare(self, committer: GroupCommitter) -> None:
        """Write the envelope (as ``.new``) and make both files durable."""
        try:
            self._write_envelope()
            await committer.commit(str(self.spool.directory), self._flush_files)
        except BaseException:
            self.abort()
            raise

    async def publish(self, committer: GroupCommitter, *, resync: bool = False) -> None:
        """Rename to ``.envelope`` and flush the directory: only then may 250 be sent.

        ``resync``: flush the files again first, as a filter may have edited them.
        """
        try:
            await committer.commit(str(self.spool.directory),
                                   self._flush_files if resync else None, self._publish)
        except BaseException:
            self.abort()
            raise

    async def commit(self, committer: GroupCommitter) -> None:
        """Write the envelope, flush, publish and flush the directory in one cycle."""
        try:
            self._write_envelope()
            await committer.commit(str(self.spool.directory), self._flush_files,
                                   self._publish)
        except BaseException:
            self.abort()
            raise

    def prepare_sync(self) -> None:
        """:meth:`prepare` without an event loop (``emailrelay-submit``, tests)."""
        try:
            self._write_envelope()
            self._flush_files()
        except BaseException:
            self.abort()
            raise

    def commit_sync(self) -> None:
        self.prepare_sync()
        try:
            self._publish()
        except BaseException:
            self.abort()
            raise
        fsync_directory(str(self.spool.directory))

    def abort(self) -> None:
        """Remove every trace of an unfinished message (a no-op once published or failed)."""
        self._close_files()
        if self._finished:
            return
        for path in (self.content_path, self.new_envelope_path):
            path.unlink(missing_ok=True)

    def _close_files(self) -> None:
        for fd in (self._content_fd, self._envelope_fd):
            if fd is not None:
                os.close(fd)
        self._content_fd = self._envelope_fd = None

    def publish_if_present(self) -> bool:
        """Publish what a filter left behind (E-MailRelay's "abandon"), without errors.

        A filter that abandons a message may have removed one or both files: a message
        missing either file is tidied away and False is returned.  The content stays if
        an envelope in a mailbox still needs it (``copy:pop``).  Blocking (fsyncs):
        call it off the event loop.
        """
        envelope = self.new_envelope_path
        if envelope.exists() and self.content_path.exists():
            try:
                self._flush_files()
                self._publish()
                fsync_directory(str(self.spool.directory))
                return True
            except OSError as e:
                log.warning("cannot keep the abandoned message \"%s\": %s", self.id, e.strerror)
        self._close_files()
        self._finished = True
        envelope.unlink(missing_ok=True)
        self.spool.remove_content_if_unreferenced(self.id)
        return False

    def fail(self, reason: str, code: str | int = "") -> bool:
        """Keep the message out of the queue as ``.bad``, with the reason appended.

        The envelope on disk (which a filter may have edited) gets the reason lines.
        Returns False if the filter had removed the files (nothing is kept then).
        Blocking (fsyncs): call it off the event loop.
        """
        bad = self.spool.envelope_path(self.id, BAD)
        if not self.new_envelope_path.exists() or not self.content_path.exists():
            self.abort()
            return False
        try:
            _append_reason(self.new_envelope_path, reason, code)
            self._flush_files()
            os.rename(self.new_envelope_path, bad)
            self._finished = True
        finally:
            self._close_files()
        fsync_directory(str(self.spool.directory))
        return True


@dataclass
class StoredMessage:
    """A message locked (``.busy``) by this process."""

    spool: Spool
    id: str
    envelope: Envelope
    _fd: int | None

    @property
    def content_path(self) -> Path:
        return self.spool.content_path(self.id)

    @property
    def envelope_path(self) -> Path:
        return self.spool.envelope_path(self.id, BUSY)

    def reread(self) -> Envelope:
        """Read the envelope again (a filter may have edited it)."""
        self.envelope = envelope_format.parse(self.envelope_path.read_bytes())
        return self.envelope

    def rewrite(self, envelope: Envelope) -> None:
        """Replace the envelope (for example to keep only rejected recipients)."""
        tmp = self.spool.envelope_path(self.id, BUSY + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            _write_all(fd, envelope.to_bytes())
            os.fdatasync(fd)
        finally:
            os.close(fd)
        # Keep holding the flock: take it on the new inode before the rename.
        new_fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        _try_flock(new_fd)
        os.rename(tmp, self.envelope_path)
        self._close()
        self._fd = new_fd
        self.envelope = envelope

    def delete(self) -> None:
        """Forwarded: remove the envelope first, so no envelope ever lacks content."""
        self.envelope_path.unlink(missing_ok=True)
        self._close()
        self.spool.remove_content_if_unreferenced(self.id)

    def release(self, envelope: Envelope | None = None) -> None:
        """Give the message back for a later attempt, with an updated envelope if given."""
        if envelope is not None:
            try:
                self.rewrite(envelope)
            except OSError as e:
                log.warning("cannot update envelope file \"%s\": %s", self.envelope_path,
                            e.strerror)
        try:
            os.rename(self.envelope_path, self.spool.envelope_path(self.id))
        finally:
            self._close()

    def fail(self, reason: str, code: str | int = "") -> None:
        """Mark the message failed (``.bad``) with E-MailRelay's reason fields."""
        try:
            _append_reason(self.envelope_path, reason, code)
            bad = self.spool.envelope_path(self.id, BAD)
            os.rename(self.envelope_path, bad)
            log.info("failing envelope [%s] -> [%s]", self.envelope_path.name, bad.name)
        finally:
            self._close()

    def reopen(self) -> Envelope:
        """After a filter ran: lock the envelope file now there and read it again.

        A filter may have replaced the file (a new inode), so the lock is taken afresh.
        Raises :class:`OSError` or :class:`EnvelopeError` if it is gone or unreadable.
        """
        fd = os.open(self.envelope_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _try_flock(fd)
            with os.fdopen(os.dup(fd), "rb") as f:
                envelope = envelope_format.parse(f.read())
        except BaseException:
            os.close(fd)
            raise
        self._close()
        self._fd = fd
        self.envelope = envelope
        return envelope

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def _append_reason(envelope_path: Path, reason: str, code: str | int) -> None:
    """Append E-MailRelay's ``Reason`` and ``ReasonCode`` lines, flushed to disk.

    As E-MailRelay, a code of 0 (no SMTP reply code) leaves ``ReasonCode:`` empty.
    """
    code = "" if str(code) in ("", "0") else str(code)
    lines = [f"{envelope_format.PREFIX}Reason: {_one_line(reason)}",
             f"{envelope_format.PREFIX}ReasonCode:{' ' + code if code else ''}"]
    with open(envelope_path, "ab") as f:
        f.write("".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape"))
        f.flush()
        os.fdatasync(f.fileno())


def _copy_or_link(source: Path, target: Path, *, hardlink: bool) -> None:
    """Hard-link (falling back to a copy across file systems) or copy, then flush."""
    if hardlink:
        try:
            os.link(source, target)
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    shutil.copyfile(source, target)
    os.chmod(target, FILE_MODE)
    fsync_path(target)


@contextlib.contextmanager
def replace_file(path: Path) -> Iterator[BinaryIO]:
    """Write a new version of a message file: yields a binary file for the new
    content, which replaces ``path`` atomically (flushed) only if the block succeeds."""
    tmp = path.with_name(path.name + TMP)
    f = open(tmp, "wb")  # noqa: SIM115
    try:
        os.chmod(tmp, FILE_MODE)
        yield f
        f.flush()
        os.fdatasync(f.fileno())
        f.close()
        os.rename(tmp, path)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def write_envelope_file(path: Path, envelope: Envelope) -> None:
    """Replace (or create) an envelope file atomically, flushed to disk."""
    with replace_file(path) as f:
        f.write(envelope.to_bytes())


def maildir_name() -> str:
    """E-MailRelay's maildir file name: ``<secs>.<usecs>.<pid>.<host>.<seq>``."""
    now = time.time()
    host = socket.gethostname() or "localhost"
    for ch in "/\\.":
        host = host.replace(ch, "_")
    return f"{int(now)}.{int(now % 1 * 1e6):06d}.{os.getpid()}.{host}.{next(_maildir_sequence)}"


def is_maildir(directory: Path) -> bool:
    return all((directory / sub).is_dir() for sub in ("tmp", "cur", "new"))


def deliver_to_mailbox(mailbox: Path, message_id: str, content: Path, envelope: Path, *,
                       hardlink: bool = False, envelope_only: bool = False) -> str:
    """Put a copy of a message into a mailbox directory; returns the new file's name.

    A maildir (one with ``tmp``, ``cur`` and ``new``) gets the content only, written in
    ``tmp`` and moved to ``new``; any other directory gets ``<id>.content`` and
    ``<id>.envelope`` (a directory that the POP3 server can serve), or with
    ``envelope_only`` just the envelope (``--pop-by-name`` then serves the main spool's
    content).  Blocking.
    """
    if is_maildir(mailbox):
        name = maildir_name()
        tmp = mailbox / "tmp" / name
        _copy_or_link(content, tmp, hardlink=hardlink)
        os.rename(tmp, mailbox / "new" / name)
        fsync_directory(str(mailbox / "new"))
        return f"new/{name}"
    target_content = mailbox / (message_id + CONTENT)
    target_envelope = mailbox / (message_id + ENVELOPE)
    if envelope_only:
        _copy_or_link(envelope, target_envelope, hardlink=False)
        fsync_directory(str(mailbox))
        return target_envelope.name
    _copy_or_link(content, target_content, hardlink=hardlink)
    try:
        _copy_or_link(envelope, target_envelope, hardlink=False)
    except BaseException:
        target_content.unlink(missing_ok=True)
        raise
    fsync_directory(str(mailbox))
    return target_envelope.name


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    state: str  # "", NEW, BUSY or BAD
    path: Path


@dataclass(frozen=True)
class MaildropMessage:
    """A ready message as a POP3 session lists it."""

    id: str
    content_path: Path
    in_parent: bool  # --pop-by-name: the content is the main spool directory's

    @property
    def uidl(self) -> str:
        """The content file's name, E-MailRelay's POP3 unique id (stable across restarts)."""
        return self.id + CONTENT


class OpenedMessage:
    """A message's content, readable while its envelope's ``flock`` keeps forwarders away."""

    def __init__(self, envelope_fd: int, content: BinaryIO) -> None:
        self._envelope_fd: int | None = envelope_fd
        self.file = content

    def close(self) -> None:
        self.file.close()
        if self._envelope_fd is not None:
            os.close(self._envelope_fd)
            self._envelope_fd = None

    def __enter__(self) -> OpenedMessage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Maildrop:
    """The ready messages of one directory (the spool or a ``--pop-by-name`` subdirectory).

    :meth:`lock` gives one session at a time the maildrop (an ``flock`` on the
    directory).  Envelopes in any state but ready (``.new``, ``.busy``, ``.bad``) are
    never listed, opened or deleted.
    """

    def __init__(self, spool: Spool, directory: Path) -> None:
        self.spool = spool
        self.directory = directory
        self._lock_fd: int | None = None

    @property
    def by_name(self) -> bool:
        return self.directory != self.spool.directory

    def _envelope(self, message_id: str, state: str = "") -> Path:
        return self.directory / (message_id + ENVELOPE + state)

    def lock(self) -> bool:
        """Take the maildrop for this session; False if another session has it."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if not _try_flock(fd):
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def messages(self) -> list[MaildropMessage]:
        """Ready messages whose content exists, oldest first."""
        found = []
        for name in os.listdir(self.directory):
            parsed = Spool.parse_name(name)
            if parsed is None or parsed[1] != "":
                continue
            message_id = parsed[0]
            content = self.directory / (message_id + CONTENT)
            in_parent = False
            if self.by_name and not content.exists():
                content, in_parent = self.spool.content_path(message_id), True
            if content.is_file():
                found.append(MaildropMessage(message_id, content, in_parent))
        return sorted(found, key=lambda m: _age_key(m.id))

    def open(self, message: MaildropMessage) -> OpenedMessage | None:
        """The content to send; None if the message is gone or being forwarded."""
        fd = _claim_ready(self._envelope(message.id))
        if fd is None:
            return None
        try:
            return OpenedMessage(fd, open(message.content_path, "rb"))
        except OSError:
            os.close(fd)
            return None

    def delete(self, messages: list[MaildropMessage]) -> list[MaildropMessage]:
        """Remove messages; returns those that could not be removed (busy or failing).

        A content file is removed with the last envelope that refers to it.
        """
        failed = []
        for message in messages:
            try:
                if not self._delete(message):
                    failed.append(message)
            except OSError as e:
                log.error("cannot delete \"%s\": %s", self._envelope(message.id), e.strerror)
                failed.append(message)
        fsync_directory(str(self.directory))
        if self.by_name:
            fsync_directory(str(self.spool.directory))
        return failed

    def _delete(self, message: MaildropMessage) -> bool:
        path = self._envelope(message.id)
        fd = _claim_ready(path)
        if fd is None:  # gone already is fine; busy, failed or new is not
            return not any(self._envelope(message.id, s).exists() for s in ("", NEW, BUSY, BAD))
        try:
            path.unlink()
        finally:
            os.close(fd)
        if self.by_name and not message.in_parent:
            message.content_path.unlink(missing_ok=True)
        else:
            self.spool.remove_content_if_unreferenced(message.id)
        return True


def _age_key(message_id: str) -> tuple[int, int, int, str]:
    """Sort ``emailrelay.<pid>.<time>.<seq>`` by time, then pid and sequence number."""
    parts = message_id.split(".")
    try:
        return int(parts[2]), int(parts[1]), int(parts[3]), message_id
    except (IndexError, ValueError):
        return 0, 0, 0, message_id


class Spool:
    def __init__(self, directory: str | os.PathLike[str], *, create: bool = True) -> None:
        self.directory = Path(directory)
        # (uid, gid) for new files, for a root program filling another user's spool.
        self.owner: tuple[int, int] | None = None
        self._prepare(create)

    def _prepare(self, create: bool) -> None:
        if not self.directory.exists() and create:
            try:
                self.directory.mkdir(mode=DIR_MODE, parents=True)
                log.info("created spool directory \"%s\"", self.directory)
            except OSError as e:
                raise SpoolError(f"cannot create spool directory \"{self.directory}\": "
                                 f"{e.strerror}") from None
        if not self.directory.exists():
            raise SpoolError(f"spool directory \"{self.directory}\" does not exist")
        if not self.directory.is_dir():
            raise SpoolError(f"spool directory \"{self.directory}\" is not a directory")
        if not os.access(self.directory, os.R_OK | os.W_OK | os.X_OK):
            raise SpoolError(f"spool directory \"{self.directory}\" is not writable")

    # -- names ------------------------------------------------------------------------------

    def new_id(self) -> str:
        return f"{PREFIX}{os.getpid()}.{int(time.time())}.{next(_sequence)}"

    def content_path(self, message_id: str) -> Path:
        return self.directory / (message_id + CONTENT)

    def envelope_path(self, message_id: str, state: str = "") -> Path:
        return self.directory / (message_id + ENVELOPE + state)

    @staticmethod
    def parse_name(name: str) -> tuple[str, str] | None:
        """``emailrelay.1.2.3.envelope.busy`` -> ``("emailrelay.1.2.3", ".busy")``."""
        if not name.startswith(PREFIX):
            return None
        stem, sep, state = name.partition(ENVELOPE)
        if not sep or state not in ("", NEW, BUSY, BAD):
            return None
        return stem, state

    @staticmethod
    def parse_content_name(name: str) -> str | None:
        """``emailrelay.1.2.3.content`` -> ``emailrelay.1.2.3``."""
        if name.startswith(PREFIX) and name.endswith(CONTENT) and len(name) > len(
                PREFIX + CONTENT):
            return name[: -len(CONTENT)]
        return None

    # -- writing ----------------------------------------------------------------------------

    def new_message(self, envelope: Envelope) -> NewMessage:
        while True:
            try:
                return NewMessage(self, self.new_id(), envelope)
            except FileExistsError:
                continue  # the same pid and second in an earlier life: next sequence number

    def link_content(self, content_of: str) -> str:
        """A new message id whose content file is a hard link to another message's.

        Its envelope is the caller's to write (:func:`write_envelope_file`); split:
        uses this.
        """
        while True:
            message_id = self.new_id()
            try:
                os.link(self.content_path(content_of), self.content_path(message_id))
                return message_id
            except FileExistsError:
                continue

    def copy_to_subdirectories(self, message_id: str, envelope: Envelope) -> bool:
        """Give a ready message to every subdirectory (a mailbox each, as ``--pop-by-name``
        reads them) by copying its envelope there; the content stays here.

        When every copy is made the original envelope is removed, so the message is not
        also forwarded.  Returns True in that case.
        """
        name = message_id + ENVELOPE
        mailboxes = self.subdirectories()
        copied = 0
        for mailbox in mailboxes:
            try:
                write_envelope_file(mailbox / name, envelope)
                if self.owner is not None:
                    os.chown(mailbox / name, *self.owner)
                fsync_directory(str(mailbox))
                copied += 1
            except OSError as e:
                log.warning("cannot copy \"%s\" into \"%s\": %s", name, mailbox, e.strerror)
        if not mailboxes or copied < len(mailboxes):
            return False
        self.envelope_path(message_id).unlink(missing_ok=True)  # unless a forwarder took it
        fsync_directory(str(self.directory))
        return True

    # -- reading ----------------------------------------------------------------------------

    def entries(self) -> Iterator[SpoolEntry]:
        try:
            names = os.listdir(self.directory)
        except OSError as e:
            raise SpoolError(f"cannot read spool directory \"{self.directory}\": "
                             f"{e.strerror}") from None
        for name in sorted(names):
            parsed = self.parse_name(name)
            if parsed:
                yield SpoolEntry(parsed[0], parsed[1], self.directory / name)

    def ready(self) -> list[str]:
        """Ids of messages waiting to be forwarded, in file-name order."""
        return [e.id for e in self.entries() if e.state == ""]

    def lock(self, message_id: str) -> StoredMessage | None:
        """Take a ready message for forwarding; None if someone else has it or it is gone.

        An envelope that cannot be parsed, or whose content file is missing, is set
        aside as ``.bad`` with the reason and None is returned.
        """
        path = self.envelope_path(message_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        if not _try_flock(fd):
            os.close(fd)
            return None
        try:
            os.rename(path, self.envelope_path(message_id, BUSY))
        except FileNotFoundError:
            os.close(fd)
            return None
        message = StoredMessage(self, message_id, Envelope(), fd)
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                message.envelope = envelope_format.parse(f.read())
        except EnvelopeError as e:
            log.warning("invalid envelope file \"%s\": %s: set aside as .bad",
                        message.envelope_path, e)
            message.fail(f"invalid envelope file: {e}")
            return None
        if not message.content_path.exists():
            log.warning("no content file for \"%s\": set aside as .bad", message.envelope_path)
            message.fail("no content file")
            return None
        return message

    def read_envelope(self, message_id: str, state: str = "") -> Envelope:
        return envelope_format.parse(self.envelope_path(message_id, state).read_bytes())

    def peek(self, message_id: str) -> Envelope | None:
        """Read a ready envelope without locking it (None if gone or unreadable)."""
        try:
            return self.read_envelope(message_id)
        except (OSError, EnvelopeError):
            return None

    def arrival_time(self, message_id: str) -> float:
        """When the message was stored: the time in its name, else its content's mtime."""
        parts = message_id.split(".")
        if len(parts) >= 4 and parts[2].isdigit():
            return float(parts[2])
        try:
            return self.content_path(message_id).stat().st_mtime
        except OSError:
            return time.time()

    def remove_content_if_unreferenced(self, message_id: str) -> None:
        """Delete the content unless an envelope here or in a mailbox still needs it.

        An envelope in a subdirectory needs it when the subdirectory has no content
        file of its own (``--pop-by-name`` with envelope-only copies).
        """
        for state in ("", NEW, BUSY, BAD):
            if self.envelope_path(message_id, state).exists():
                return
        name = message_id + ENVELOPE
        for sub in self.subdirectories():
            if any((sub / (name + s)).exists() for s in ("", NEW, BUSY, BAD)) and not (
                    sub / (message_id + CONTENT)).exists():
                return
        self.content_path(message_id).unlink(missing_ok=True)

    def subdirectories(self) -> list[Path]:
        try:
            if os.stat(self.directory).st_nlink == 2:
                return []  # no subdirectory links: skip listing a big spool (ext4, xfs...)
            with os.scandir(self.directory) as entries:
                return sorted(Path(e.path) for e in entries
                              if not e.name.startswith(".") and e.is_dir())
        except OSError:
            return []

    # -- mailboxes: subdirectories for --pop-by-name and the copy filter ---------------------

    def mailbox(self, name: str) -> Path:
        """The subdirectory called ``name``, created (private) if it does not exist."""
        if not valid_mailbox_name(name):
            raise MailboxNameError(f"invalid mailbox name {name!r}: it must be printable, "
                                   "without \"/\" or \"..\", and not start with \".\"")
        path = self.directory / name
        if not path.is_dir():
            try:
                path.mkdir(mode=DIR_MODE)
                log.info("created pop-by-name sub-directory [%s]", name)
            except FileExistsError:
                pass
        return path

    def maildrop(self, user: str | None = None) -> Maildrop:
        """The whole spool, or with a user name that user's subdirectory (created)."""
        return Maildrop(self, self.directory if user is None else self.mailbox(user))

    def delete_message(self, message_id: str, state: str) -> None:
        """Remove a message's envelope (in ``state``), and its content unless another
        envelope still refers to it."""
        self.envelope_path(message_id, state).unlink(missing_ok=True)
        self.remove_content_if_unreferenced(message_id)
        fsync_directory(str(self.directory))

    # -- maintenance ------------------------------------------------------------------------

    def unfail_all(self) -> int:
        """Return every ``.bad`` message to the ready state; returns how many."""
        count = 0
        for entry in self.entries():
            if entry.state == BAD:
                try:
                    os.rename(entry.path, self.envelope_path(entry.id))
                    count += 1
                except FileNotFoundError:
                    pass
        return count

    def recover(self) -> None:
        """Tidy up after processes that died: run once at start-up."""
        content_ids: set[str] = set()
        envelope_ids: set[str] = set()
        for name in sorted(os.listdir(self.directory)):
            if name.startswith(PREFIX) and name.endswith(CONTENT):
                content_ids.add(name[: -len(CONTENT)])
        for entry in self.entries():
            envelope_ids.add(entry.id)
            if entry.state == NEW:
                self._recover_new(entry)
            elif entry.state == BUSY:
                self._recover_busy(entry)
        for sub in self.subdirectories():
            for name in os.listdir(sub):
                parsed = self.parse_name(name)
                if parsed:
                    envelope_ids.add(parsed[0])
        for message_id in sorted(content_ids - envelope_ids):
            self._set_aside_orphan(message_id)

    def _owned_elsewhere(self, path: Path) -> bool | None:
        """True if a live process holds the envelope's flock; None if it vanished."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return not _try_flock(fd)
        finally:
            os.close(fd)

    def _recover_new(self, entry: SpoolEntry) -> None:
        owned = self._owned_elsewhere(entry.path)
        pid = _pid_of(entry.id)
        if owned or owned is None or (pid is not None and _pid_alive(pid)):
            return
        entry.path.unlink(missing_ok=True)
        self.content_path(entry.id).unlink(missing_ok=True)
        log.warning("removed the unfinished message \"%s\" left by a process that stopped "
                    "(it was never acknowledged)", entry.path.name)

    def _recover_busy(self, entry: SpoolEntry) -> None:
        if self._owned_elsewhere(entry.path) is not False:
            return
        try:
            os.rename(entry.path, self.envelope_path(entry.id))
            log.warning("returned \"%s\" to the queue: the process forwarding it stopped",
                        entry.path.name)
        except FileNotFoundError:
            pass

    def _set_aside_orphan(self, message_id: str) -> None:
        path = self.content_path(message_id)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return
        if age < ORPHAN_AGE:
            return  # perhaps another program is still writing its envelope
        os.rename(path, path.with_name(path.name + ORPHAN))
        log.warning("content file \"%s\" has no envelope: renamed to \"%s%s\"", path.name,
                    path.name, ORPHAN)
