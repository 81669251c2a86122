from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.relay import Relay, free_port, wait_for_port


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


SMTP_SINK = "/usr/sbin/smtp-sink"


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Postfix's smtp-sink, dumping each message into its own file."""
    if not Path(SMTP_SINK).exists():
        pytest.skip("smtp-sink (Debian package postfix) is not installed")
    port = free_port()
    dumps = tmp_path / "sink"
    dumps.mkdir()
    process = subprocess.Popen([SMTP_SINK, "-u", "root", "-d", f"{dumps}/m",
                                f"127.0.0.1:{port}", "100"])
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}", dumps
    finally:
        process.terminate()
        process.wait(10)
