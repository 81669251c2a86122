"""--workers: SMTP served by several processes on the same sockets."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from tests.support.admin import AdminClient
from tests.support.capture import CaptureServer
from tests.support.relay import free_port, run_emailrelay, wait_until


def _children(relay) -> list[psutil.Process]:
    return psutil.Process(relay.process.pid).children()


def _workers(relay, count: int) -> list[psutil.Process]:  # type: ignore[no-untyped-def]
    """The worker processes, once all ``count`` are there: the socket listens (and the
    test's wait for the port ends) before they are forked."""
    wait_until(lambda: len(_children(relay)) >= count)
    return _children(relay)


def _send(port: int, n: int) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        return client.sendmail("a@example.com", ["b@example.com"],
                               f"Subject: {n}\r\n\r\nhello\r\n".encode())


def test_workers_share_the_load_and_stop_together(start_relay) -> None:
    relay = start_relay("--workers", "3")
    assert len(_workers(relay, 2)) == 2
    pids: set[str] = set()
    for _ in range(5):  # the kernel decides who accepts: send until several did
        with ThreadPoolExecutor(32) as pool:
            assert list(pool.map(lambda n: _send(relay.port, n), range(64))) == [{}] * 64
        pids = {p.name.split(".")[1] for p in relay.envelopes()}
        if len(pids) > 1:
            break
    assert len(pids) > 1
    assert len(relay.envelopes()) == len(relay.contents()) >= 64
    workers = _children(relay)
    assert relay.stop() == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_a_workers_client_triggers_forwarding_in_the_main_process(start_relay) -> None:
    with CaptureServer() as far:
        relay = start_relay("--workers", "2", "--forward-to", far.address,
                            "--forward-on-disconnect")
        for n in range(20):
            _send(relay.port, n)
        arrived = far.wait_for(20)
        assert sorted(m.content.split(b"Subject: ")[1].split(b"\r\n")[0] for m in arrived) \
            == sorted(str(n).encode() for n in range(20))
    assert relay.envelopes() == []


def test_a_worker_that_dies_is_reported_and_the_rest_serve(start_relay) -> None:
    relay = start_relay("--workers", "2")
    (worker,) = _workers(relay, 1)
    os.kill(worker.pid, signal.SIGKILL)
    relay.wait_for_log("worker process")
    for n in range(10):
        assert _send(relay.port, n) == {}
    assert "stopped unexpectedly (signal SIGKILL)" in relay.log()


def test_admin_smtp_disable_reaches_the_workers(start_relay) -> None:
    admin = free_port()
    relay = start_relay("--workers", "2", "--admin", str(admin))
    assert AdminClient(admin).command("smtp disable") == "OK"
    time.sleep(0.5)  # the workers hear of it over their pipes
    for _ in range(20):  # whichever process accepts, SMTP is off
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as c:
            assert c.recv(100).startswith(b"421 ")


def test_workers_cannot_forward_immediately(tmp_path: Path) -> None:
    result = run_emailrelay("--no-daemon", "--workers", "2", "--immediate", "--forward-to",
                            "127.0.0.1:9", "--spool-dir", str(tmp_path))
    assert result.returncode == 1
    assert "the --workers option cannot be used with --immediate" in result.stderr
