"""Put messages into a spool directory and look at it, through the spool's own API."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from unittest import mock

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import BAD, BUSY, NEW, Spool
from tests.support.relay import run_emailrelay

STATES = {"": "ready", BAD: "bad", BUSY: "busy", NEW: "new"}


def spool_message(directory: Path, *, to: list[str] | None = None,
                  content: bytes = b"Subject: hello\r\n\r\nhello\r\n", body_type: str = "7bit",
                  to_local: list[str] | None = None, forward_to_address: str = "",
                  arrival_offset: float = 0.0) -> str:
    """Store a ready message as the server would; returns its id."""
    envelope = Envelope(from_="a@example.com", to_remote=["b@example.com"] if to is None
                        else to, to_local=to_local or [], body_type=body_type,
                        client="127.0.0.1", forward_to_address=forward_to_address)
    spool = Spool(directory)
    with mock.patch("time.time", return_value=time.time() + arrival_offset):
        message = spool.new_message(envelope)
    message.write(content)
    message.commit_sync()
    return message.id


def spool_state(directory: Path) -> dict[str, str]:
    """Message id -> ready, bad, busy or new."""
    return {e.id: STATES[e.state] for e in Spool(directory).entries()}


def as_client(address: str, spool: Path, *options: str,
              timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return run_emailrelay("--as-client", address, "--spool-dir", str(spool), "--user", "root",
                          *options, timeout=timeout)
