"""SIGHUP: features reload what they read from files, keeping the old copy on failure.

A feature registers a hook once at start-up::

    secrets = Reloadable("server secrets", lambda: load_secrets(path))   # loads now
    reloads.register(secrets)
    ...  secrets.current  ...

On SIGHUP the runtime calls every hook.  A hook either replaces its object completely
or raises, in which case the old object stays in use and the error is logged; one
broken file never stops the others from being reloaded.

Files are read at start-up as root (a key readable by root only is the usual setup) but
reloaded as the ``--user`` account; :meth:`ReloadRegistry.warn_unreadable` says at
start-up which of them that account cannot read, before a SIGHUP finds out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("emailrelay")

T = TypeVar("T")


class ReloadHook(Protocol):
    name: str

    def reload(self) -> None:
        """Load afresh and swap in, or raise and leave everything as it was."""

    def files(self) -> list[str]:
        """The files a reload reads."""


class Reloadable(Generic[T]):
    """An object loaded by a function, swapped for a new one on :meth:`reload`."""

    def __init__(self, name: str, load: Callable[[], T], files: Sequence[str] = ()) -> None:
        self.name = name
        self._load = load
        self._files = list(files)
        self.current: T = load()

    def reload(self) -> None:
        self.current = self._load()  # assigned only if loading succeeded

    def files(self) -> list[str]:
        return self._files


class ReloadRegistry:
    def __init__(self) -> None:
        self.hooks: list[ReloadHook] = []

    def register(self, hook: ReloadHook) -> None:
        self.hooks.append(hook)

    def reload_all(self) -> int:
        """Run every hook; returns how many failed (each failure is logged)."""
        failures = 0
        for hook in self.hooks:
            try:
                hook.reload()
            except Exception as e:  # a broken file must not stop the process
                failures += 1
                log.error("cannot reload the %s: %s: still using the previous one",
                          hook.name, e)
            else:
                log.info("reloaded the %s", hook.name)
        return failures

    def warn_unreadable(self, user: str) -> None:
        """After the privilege drop: warn about each file this process can no longer
        read (a reload would fail on it)."""
        for hook in self.hooks:
            for path in dict.fromkeys(hook.files()):
                if not os.access(path, os.R_OK):
                    log.warning("user \"%s\" cannot read \"%s\" (for the %s): SIGHUP cannot "
                                "reload it; what was read at start-up stays in use", user, path,
                                hook.name)
