"""The JSON health and status document (``GET /health``) for container health checks.

The HTTP status is 200 while the relay can do its job and 503 when it cannot: a spool
directory that cannot be read or written, or a process that is shutting down.  An SMTP
server disabled from the admin interface is reported but still counts as healthy (it was
asked for).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

from emailrelay import COMPATIBLE_WITH, __version__
from emailrelay.app.services import Services
from emailrelay.metrics.registry import queue_state
from emailrelay.policy.dnsbl import DnsblChecker
from emailrelay.spool.store import Spool, SpoolError


class HealthTarget(Protocol):
    """The parts of an instance the document describes."""

    name: str
    spool: Spool
    smtp_enabled: bool
    dnsbl: DnsblChecker | None

    def listening(self) -> list[str]: ...


def _dnsbl_state(checker: DnsblChecker | None) -> str:
    if checker is None:
        return "off"
    return "suspended" if checker.suspended else "on"


def health_document(instances: Sequence[HealthTarget], services: Services,
                    started: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, document).  Blocking: it scans the spool directories."""
    problems: list[str] = []
    units = []
    for instance in instances:
        directory = str(instance.spool.directory)
        unit: dict[str, Any] = {
            "name": instance.name, "spool_directory": directory,
            "listening": instance.listening(),
            "smtp": "enabled" if instance.smtp_enabled else "disabled",
            "dnsbl": _dnsbl_state(instance.dnsbl)}
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            problems.append(f"spool directory \"{directory}\" is not accessible")
        try:
            unit["queue"] = queue_state(instance.spool).as_dict()
        except SpoolError as e:
            problems.append(str(e))
        units.append(unit)
    status = "stopping" if services.stopping else "failing" if problems else "ok"
    connections = services.connections
    document = {
        "status": status,
        "problems": problems,
        "version": __version__,
        "compatible_with": f"E-MailRelay {COMPATIBLE_WITH}",
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - started, 3),
        "connections": {kind: connections.count(kind) for kind in ("smtp", "pop", "admin")},
        "instances": units,
    }
    return (200 if status == "ok" else 503), document
