"""Process-wide objects that every instance shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emailrelay.app.observer import Observer
from emailrelay.app.reload import ReloadRegistry
from emailrelay.options.parser import Settings
from emailrelay.policy.connections import ConnectionLimits, ConnectionRegistry


def _nothing() -> None:
    pass


@dataclass
class Services:
    observer: Observer = field(default_factory=Observer)
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    reloads: ReloadRegistry = field(default_factory=ReloadRegistry)
    request_stop: Callable[[], None] = _nothing  # the runtime's graceful stop (terminate)
    stopping: bool = False  # shutting down: the health document says so

    def __post_init__(self) -> None:
        self.connections.observer = self.observer

    @classmethod
    def from_settings(cls, process: Settings) -> Services:
        """Built from the process-wide options (those of the first instance)."""
        limits = ConnectionLimits(total=process.int("max-connections") or 0,
                                  per_client=process.int("max-client-connections") or 0)
        observer = Observer()
        if process.has("metrics-port"):
            from emailrelay.metrics.registry import RelayMetrics  # loads prometheus-client
            observer.metrics = RelayMetrics()
        return cls(observer=observer, connections=ConnectionRegistry(limits))
