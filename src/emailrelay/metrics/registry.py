"""The Prometheus metrics, kept in a registry of our own (not the library's global one).

Counters are incremented where things happen (through :class:`emailrelay.app.observer
.Observer`); the spool gauges are computed from the spool directories on each scrape,
so they are right even when another process (a second relay, ``emailrelay-submit``)
shares the spool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from emailrelay import COMPATIBLE_WITH, __version__
from emailrelay.spool.store import BAD, BUSY, NEW, Spool, SpoolError

# No "<name>_created" series next to each counter: they double the output for nothing.
prometheus_client.disable_created_metrics()

FORWARD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STATE_NAMES = {"": "ready", BUSY: "busy", BAD: "failed", NEW: "incoming"}


@dataclass
class QueueState:
    """The messages in one spool directory, counted by state."""

    ready: int = 0
    busy: int = 0  # being forwarded
    failed: int = 0  # .bad
    incoming: int = 0  # still being received (.new)
    oldest_age: float = 0.0  # seconds since the oldest ready or busy message arrived

    def as_dict(self) -> dict[str, float]:
        return {"ready": self.ready, "busy": self.busy, "failed": self.failed,
                "incoming": self.incoming, "oldest_age_seconds": round(self.oldest_age, 3)}


def queue_state(spool: Spool) -> QueueState:
    """Scan a spool directory (blocking: call it off the event loop for big spools)."""
    state = QueueState()
    now = time.time()
    oldest: float | None = None
    for entry in spool.entries():
        name = STATE_NAMES[entry.state]
        setattr(state, name, getattr(state, name) + 1)
        if entry.state in ("", BUSY):
            try:
                arrived = os.stat(spool.content_path(entry.id)).st_mtime
            except OSError:
                continue
            oldest = arrived if oldest is None else min(oldest, arrived)
    if oldest is not None:
        state.oldest_age = max(0.0, now - oldest)
    return state


class SpoolCollector(Collector):
    """Queue depth and age per instance ("unit"), read from the spool on each scrape."""

    def __init__(self) -> None:
        self.spools: list[tuple[str, Spool]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("emailrelay_queue_messages",
                                  "Messages in the spool directory by state.",
                                  labels=["unit", "state"])
        age = GaugeMetricFamily("emailrelay_queue_oldest_message_age_seconds",
                                "Age of the oldest message waiting to be forwarded "
                                "(0 when there is none).", labels=["unit"])
        for unit, spool in self.spools:
            try:
                state = queue_state(spool)
            except SpoolError:
                continue
            for name in STATE_NAMES.values():
                depth.add_metric([unit, name], getattr(state, name))
            age.add_metric([unit], state.oldest_age)
        yield depth
        yield age


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.received = Counter("emailrelay_messages_received",
                                "Messages received over SMTP and stored in the spool.",
                                registry=r)
        self.forwarded = Counter("emailrelay_messages_forwarded",
                                 "Messages the smarthost accepted.", registry=r)
        self.failed = Counter("emailrelay_messages_failed",
                              "Messages that failed while forwarding (left as .bad).",
                              registry=r)
        self.deferred = Counter("emailrelay_messages_deferred",
                                "Forwarding attempts that left the message queued for a "
                                "retry.", registry=r)
        self.rejected = Counter("emailrelay_rejected",
                                "Connections, recipients and messages refused, by reason.",
                                ["reason"], registry=r)
        self.connections = Gauge("emailrelay_connections",
                                 "Connections open now, by kind of server.", ["kind"],
                                 registry=r)
        self.sessions = Counter("emailrelay_sessions",
                                "Connections finished, by kind of server and TLS use.",
                                ["kind", "tls"], registry=r)
        self.forward_seconds = Histogram("emailrelay_forward_duration_seconds",
                                         "Time to forward one message to the smarthost.",
                                         buckets=FORWARD_BUCKETS, registry=r)
        Gauge("emailrelay_start_time_seconds", "When the process started (Unix time).",
              registry=r).set_to_current_time()
        prometheus_client.Info("emailrelay", "The program's version.", registry=r).info(
            {"version": __version__, "compatible_with": f"E-MailRelay {COMPATIBLE_WITH}"})
        ProcessCollector(registry=r)
        self.spools = SpoolCollector()
        r.register(self.spools)

    def watch_spool(self, unit: str, spool: Spool) -> None:
        self.spools.spools.append((unit, spool))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes (blocking: reads the spool directories)."""
        return prometheus_client.generate_latest(self.registry)
