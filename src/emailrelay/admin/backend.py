"""The admin interface's view of one instance (an :class:`~emailrelay.admin.core.AdminBackend`)."""

from __future__ import annotations

import logging
import os
from typing import Protocol

from emailrelay import COMPATIBLE_WITH, __version__
from emailrelay.admin.core import ForwardingControl
from emailrelay.app.services import Services
from emailrelay.forward.agent import Forwarder
from emailrelay.options.help import WARRANTY, tls_library_id
from emailrelay.policy.dnsbl import DnsblChecker
from emailrelay.spool.store import BAD, Spool

log = logging.getLogger("emailrelay")


class ForwarderControl:
    """The forwarding agent as the admin interface's :class:`ForwardingControl`."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def request_forward(self, reason: str) -> None:
        self.forwarder.request_forward(reason)

    async def flush(self) -> str:
        report = await self.forwarder.run_once("admin")
        if report.errors:
            return "; ".join(report.errors)
        left = report.deferred + report.not_tried
        return f"{left} message{'' if left == 1 else 's'} not sent" if left else ""


class AdminTarget(Protocol):
    """The parts of :class:`emailrelay.app.instance.Instance` the interface uses."""

    spool: Spool
    forwarding: ForwardingControl | None
    dnsbl: DnsblChecker | None
    smtp_enabled: bool


class InstanceAdmin:
    def __init__(self, instance: AdminTarget, services: Services) -> None:
        self.instance = instance
        self.services = services

    @property
    def forwarding(self) -> ForwardingControl | None:
        return self.instance.forwarding

    @property
    def pid(self) -> int:
        return os.getpid()

    def ready_ids(self) -> list[str]:
        return self.instance.spool.ready()

    def failed_ids(self) -> list[str]:
        return [e.id for e in self.instance.spool.entries() if e.state == BAD]

    def unfail_all(self) -> None:
        count = self.instance.spool.unfail_all()
        log.info("admin: %d failed message%s returned to the queue", count,
                 "" if count == 1 else "s")

    def status_lines(self) -> list[str]:
        return self.services.connections.report()

    def info(self) -> dict[str, str]:
        return {"version": f"{COMPATIBLE_WITH} (emailrelay for Python {__version__})",
                "credit": f"TLS library: {tls_library_id()}",
                "copyright": "emailrelay for Python, a work-alike of E-MailRelay by "
                             "Graeme Walker",
                "warranty": "\n".join(WARRANTY)}

    def set_smtp_enabled(self, enabled: bool) -> None:
        if self.instance.smtp_enabled != enabled:
            log.info("admin: smtp server %s", "enabled" if enabled else
                     "disabled: new connections get \"421 service not available\"")
        self.instance.smtp_enabled = enabled

    def suspend_dnsbl(self, seconds: int | None) -> None:
        if self.instance.dnsbl is not None:
            self.instance.dnsbl.suspend(seconds)

    def terminate(self) -> None:
        self.services.request_stop()
