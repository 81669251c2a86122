"""What happens in the relay, told once to everyone interested.

Features call :class:`Observer` at the places where things happen.  It counts them in
the Prometheus metrics and passes them on as events -- E-MailRelay's four-word events
that the admin ``notify`` command shows as ``EVENT: network: in: start`` -- to whoever
subscribed to the :class:`EventBus`.

The events, with the words E-MailRelay uses where it has them:

==============================================  =========================================
``network in start`` / ``network in stop``       a connection to any server opened/closed
``server stored <id>``                           a message received and spooled (ours)
``server rejected <reason>``                     something refused (ours; reasons below)
``client forward start <reason>``                a forwarding run started ("admin"...)
``client forward end [<error>]``                 it ended
``client sending <id>``                          a message is being forwarded
``client sent <id> [<reason>]``                  done: forwarded, or failed or deferred
==============================================  =========================================

Rejection reasons (the ``reason`` label of ``emailrelay_rejected_total``):
``remote_client``, ``connection_limit``, ``client_connection_limit``, ``dnsbl``,
``smtp_disabled``, ``recipient`` (refused by the address verifier), ``recipients`` (too
many), ``size``, ``content``, ``filter`` and ``storage``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus-client is loaded only with --metrics-port
    from emailrelay.metrics.registry import RelayMetrics

Event = tuple[str, ...]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with each event; returns the function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, *words: str) -> None:
        for callback in list(self._subscribers):
            callback(words)


class Observer:
    """Counts into the metrics (when ``--metrics-port`` asks for them) and publishes
    the admin interface's notify events."""

    def __init__(self, metrics: RelayMetrics | None = None,
                 events: EventBus | None = None) -> None:
        self.metrics = metrics
        self.events = events or EventBus()

    # -- servers ----------------------------------------------------------------------------

    def connection_opened(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.connections.labels(kind).inc()
        self.events.publish("network", "in", "start")

    def connection_closed(self, kind: str, tls: bool) -> None:
        if self.metrics is not None:
            self.metrics.connections.labels(kind).dec()
            self.metrics.sessions.labels(kind, "yes" if tls else "no").inc()
        self.events.publish("network", "in", "stop")

    def rejected(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()
        self.events.publish("server", "rejected", reason)

    def message_received(self, message_id: str) -> None:
        if self.metrics is not None:
            self.metrics.received.inc()
        self.events.publish("server", "stored", message_id)

    def smtp_count(self, name: str, detail: str) -> None:
        """The SMTP session's ``SmtpContext.count`` hook."""
        if name == "received":
            self.message_received(detail)
        elif name == "rejected":
            self.rejected(detail)

    # -- forwarding (for the forwarding agent) ------------------------------------------------

    def forwarding_started(self, reason: str) -> None:
        self.events.publish("client", "forward", "start", reason)

    def forwarding_ended(self, error: str = "") -> None:
        self.events.publish("client", "forward", "end", error)

    def message_sending(self, message_id: str) -> None:
        self.events.publish("client", "sending", message_id)

    def message_forwarded(self, message_id: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.forwarded.inc()
            self.metrics.forward_seconds.observe(seconds)
        self.events.publish("client", "sent", message_id)

    def message_failed(self, message_id: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.failed.inc()
        self.events.publish("client", "sent", message_id, reason)

    def message_deferred(self, message_id: str, reason: str) -> None:
        """Not sent this time: it stays in the queue for a retry."""
        if self.metrics is not None:
            self.metrics.deferred.inc()
        self.events.publish("client", "sent", message_id, reason)
