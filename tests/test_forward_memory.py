"""Forwarding streams: a 200 MB message must not grow memory by more than a few MB."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool
from tests.support.relay import emailrelay_command
from tests.support.spooling import spool_message, spool_state

LINE = b"x" * 76 + b"\r\n" + b".dot-stuffed line\r\n"


def big_message(directory: Path, megabytes: int) -> str:
    message = Spool(directory).new_message(Envelope(from_="a@example.com",
                                                    to_remote=["b@example.com"]))
    block = LINE * (1 << 20 // len(LINE))
    written = 0
    while written < megabytes << 20:
        message.write(block)
        written += len(block)
    message.commit_sync()
    return message.id


def peak_rss_of_as_client(address: str, spool: Path) -> int:
    process = subprocess.Popen([*emailrelay_command(), "--as-client", address, "--spool-dir",
                                str(spool), "--user", "root"], stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    assert process.wait(120) == 0, process.stderr.read() if process.stderr else ""
    return peak


@pytest.mark.slow
def test_200_mb_forward_does_not_grow_memory(tmp_path: Path, smtp_sink) -> None:
    address, _ = smtp_sink
    small, big = tmp_path / "small", tmp_path / "big"
    spool_message(small)
    big_message(big, 200)
    baseline = peak_rss_of_as_client(address, small)
    peak = peak_rss_of_as_client(address, big)
    assert spool_state(big) == {}
    print(f"peak RSS {peak >> 20} MB, baseline {baseline >> 20} MB")
    assert peak - baseline < 8 << 20, f"grew by {(peak - baseline) >> 20} MB"
