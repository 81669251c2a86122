"""A test-only fault hook for the crash-consistency harness (tests/support/crash.py).

With ``EMAILRELAY_TEST_CRASH_AT=<point>`` in its environment the process kills itself with
SIGKILL the first time it reaches ``<point>``: ``stored`` (a message is durable in the
spool but its 250 is not sent yet) or ``forwarded`` (the smarthost said 250 but the
message is not deleted yet).  Those windows are too narrow to hit reliably from outside.
Without the variable (always, outside tests) a crash point is one comparison.
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("EMAILRELAY_TEST_CRASH_AT")


def crash_point(name: str) -> None:
    if name == _POINT:
        os.kill(os.getpid(), signal.SIGKILL)
