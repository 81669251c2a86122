"""Retries with exponential back-off (beyond E-MailRelay, which only retries on --poll).

Two kinds of state:

* per message, kept in the envelope (``X-MailRelay-RetryCount`` and
  ``X-MailRelay-RetryAfter`` after the end line, which E-MailRelay ignores), so it
  survives restarts and travels with the message through every rename;
* per smarthost, in memory: while a destination is down only one connection (the
  probe) is tried per back-off period, however many messages wait for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 60.0  # --retry-delay
    max_delay: float = 3600.0  # --retry-max-delay
    max_age: float = 0.0  # --retry-max-age: 0 keeps trying for ever, as E-MailRelay does

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the given number of failed attempts (1, 2, ...)."""
        if attempt <= 0:
            return 0.0
        return min(self.max_delay, self.first_delay * 2.0 ** min(attempt - 1, 30))

    def expired(self, arrival: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.max_age > 0 and now - arrival >= self.max_age


@dataclass
class DestinationState:
    """Connection failures to one smarthost address."""

    failures: int = 0
    next_probe: float = 0.0
    last_error: str = ""

    def down(self, now: float) -> bool:
        return self.failures > 0 and now < self.next_probe

    def failed(self, policy: RetryPolicy, error: str, now: float) -> None:
        self.failures += 1
        self.last_error = error
        self.next_probe = now + policy.delay(self.failures)

    def succeeded(self) -> None:
        self.failures = 0
        self.next_probe = 0.0
        self.last_error = ""
