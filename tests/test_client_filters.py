"""run_client_filters: the API the forwarding agent uses on locked messages."""

from __future__ import annotations

import asyncio
import fcntl
import sys
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig
from emailrelay.filters.client import ClientFilters, run_client_filters
from emailrelay.filters.result import CLIENT, Verdict
from emailrelay.filters.spec import parse_chain
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool, StoredMessage
from tests.support.helpers import script, stored_message


def locked(spool: Spool, envelope: Envelope | None = None) -> StoredMessage:
    message = spool.lock(stored_message(spool, envelope))
    assert message is not None
    return message


def client(spool: Spool, *specs: str, timeout: float = 10) -> ClientFilters:
    return ClientFilters(parse_chain(list(specs))[0],
                         FilterConfig(CLIENT, spool, timeout, "example.com", spool.directory))


@pytest.mark.parametrize(("code", "verdict", "stop"), [
    (0, Verdict.OK, False),
    (1, Verdict.FAIL, False),
    (100, Verdict.ABANDON, False),
    (102, Verdict.OK, True),
    (103, Verdict.OK, False),
    (104, Verdict.ABANDON, True),
    (105, Verdict.FAIL, True),
])
def test_exit_codes(tmp_path: Path, code: int, verdict: Verdict, stop: bool) -> None:
    spool = Spool(tmp_path / "spool")
    message = locked(spool)
    program = script(tmp_path, "f.sh", f'case "$2" in *.envelope.busy) ;; *) exit 9;; esac\n'
                                       f"exit {code}\n")
    outcome = asyncio.run(run_client_filters(client(spool, str(program)), message))
    assert (outcome.verdict, outcome.stop_scan) == (verdict, stop)
    if verdict is Verdict.FAIL:
        assert (outcome.reason, outcome.reason_code) == ("rejected", 550)
        message.fail(outcome.reason, outcome.reason_code)
        assert spool.read_envelope(message.id, ".bad").extra == [
            "X-MailRelay-Reason: rejected", "X-MailRelay-ReasonCode: 550"]


def test_second_output_line_is_the_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    program = script(tmp_path, "f.sh", "echo '<<550 no>>'; echo '<<quota exceeded>>'; exit 5\n")
    outcome = asyncio.run(run_client_filters(client(spool, str(program)), locked(spool)))
    assert (outcome.verdict, outcome.reason, outcome.reason_code) == (
        Verdict.FAIL, "quota exceeded", 550)


def test_ok_rereads_an_envelope_the_filter_replaced(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = locked(spool)
    program = script(tmp_path, "route.py", """
import os, sys
env = sys.argv[2]
text = open(env, "rb").read().replace(b"ForwardToAddress: ", b"ForwardToAddress: 192.0.2.7:25")
open(env + ".tmp", "wb").write(text)
os.rename(env + ".tmp", env)
""", sys.executable)
    outcome = asyncio.run(run_client_filters(client(spool, str(program)), message))
    assert outcome.ok
    assert message.envelope.forward_to_address == "192.0.2.7:25"
    # The lock was taken on the new file: no other process can claim it as abandoned.
    with open(message.envelope_path, "rb") as f, pytest.raises(BlockingIOError):
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    message.release()
    assert spool.read_envelope(message.id).forward_to_address == "192.0.2.7:25"


def test_ok_but_envelope_removed_is_a_failure(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    program = script(tmp_path, "rm.sh", 'rm -f "$2"\nexit 0\n')
    outcome = asyncio.run(run_client_filters(client(spool, str(program)), locked(spool)))
    assert outcome.verdict is Verdict.FAIL and "cannot read the envelope again" in outcome.reason


def test_timeout(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    program = script(tmp_path, "slow.sh", "sleep 30\n")
    outcome = asyncio.run(run_client_filters(client(spool, str(program), timeout=0.3),
                                             locked(spool)))
    assert (outcome.verdict, outcome.reason) == (Verdict.FAIL, "timeout")


def test_abandon_after_the_filter_moved_the_message_away(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = locked(spool)
    program = script(tmp_path, "mv.sh", f'mv "$1" "$2" {tmp_path}/\nexit 100\n')
    outcome = asyncio.run(run_client_filters(client(spool, str(program)), message))
    assert outcome.verdict is Verdict.ABANDON
    assert not message.envelope_path.exists()


def test_copy_filter_copies_into_spool_subdirectories(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for name in ("alice", "bob"):
        (spool.directory / name).mkdir()
    message = locked(spool)
    outcome = asyncio.run(run_client_filters(client(spool, "copy:nodelete"), message))
    assert outcome.ok
    for name in ("alice", "bob"):
        assert (spool.directory / name / f"{message.id}.content").exists()
