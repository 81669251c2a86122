"""SIGHUP: features reload what they read from files, keeping the old copy on failure.

A feature registers a hook once at start-up::

    secrets = Reloadable("server secrets", lambda: load_secrets(path))   # loads now
    reloads.register(secrets)
    ...  secrets.current  ...

On SIGHUP the runtime calls every hook.  A hook either replaces its object completely
or raises, in which case the old object stays in use and the error is logged; one
broken file never stops the others from being reloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("emailrelay")

T = TypeVar("T")


class ReloadHook(Protocol):
    name: str

    def reload(self) -> None:
        """Load afresh and swap in, or raise and leave everything as it was."""


class Reloadable(Generic[T]):
    """An object loaded by a function, swapped for a new one on :meth:`reload`."""

    def __init__(self, name: str, load: Callable[[], T]) -> None:
        self.name = name
        self._load = load
        self.current: T = load()

    def reload(self) -> None:
        self.current = self._load()  # assigned only if loading succeeded


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
