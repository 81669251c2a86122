"""Becoming a daemon, the pid file and dropping root privileges."""

from __future__ import annotations

import codecs
import contextlib
import os
import pwd
import sys
from pathlib import Path


class StartupError(Exception):
    """A start-up failure reported as ``emailrelay: error: ...`` with exit code 1."""


class Readiness:
    """Lets the parent of a daemon exit only once the child is up (or has failed)."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()

    def become_daemon(self) -> None:
        """Fork: the parent waits for :meth:`ready` and exits; the child carries on."""
        pid = os.fork()
        if pid > 0:
            os.close(self._write_fd)
            with os.fdopen(self._read_fd, "rb") as pipe:
                status = pipe.read(1)
            os._exit(0 if status == b"0" else 1)
        os.close(self._read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)  # the first child: the grandchild can never regain a terminal
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)

    def ready(self, ok: bool = True) -> None:
        if self._write_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"0" if ok else b"1")
            os.close(self._write_fd)
            self._write_fd = -1


def write_pid_file(path: str) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.chmod(0o644)
        tmp.replace(target)
    except OSError as e:
        raise StartupError(f"cannot write pid file \"{path}\": {e.strerror}") from None


def remove_pid_file(path: str) -> None:
    with contextlib.suppress(OSError):
        if Path(path).read_text().strip() == str(os.getpid()):
            Path(path).unlink()


# Codecs used after start-up (protocol traces, international domain names).  Python
# imports a codec on its first use, and the --user account may not be able to read the
# interpreter's library (one installed under /root, say), so they are loaded as root.
CODECS = ("ascii", "latin-1", "utf-8", "idna", "unicode_escape", "punycode")


def drop_privileges(user: str, chown_paths: list[Path]) -> None:
    """When running as root, switch to ``user`` for good (``root`` keeps root)."""
    if os.geteuid() != 0 or user == "root":
        return
    for codec in CODECS:
        codecs.lookup(codec)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise StartupError(f"invalid --user: no such user \"{user}\"") from None
    for path in chown_paths:
        with contextlib.suppress(OSError):
            if path.stat().st_uid == 0:
                os.chown(path, entry.pw_uid, entry.pw_gid)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def program_name() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "emailrelay" if name in ("", "__main__.py", "-c") else name
