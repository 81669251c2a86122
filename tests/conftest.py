from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.relay import Relay


@pytest.fixture
def start_relay(tmp_path: Path) -> Iterator:
    """Factory: ``start_relay("--size", "1000")`` starts a relay; all stop at the end."""
    started: list[Relay] = []

    def start(*args: str, **kw) -> Relay:
        relay = Relay(tmp_path, *args, name=kw.pop("name", f"relay{len(started)}"), **kw)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()
