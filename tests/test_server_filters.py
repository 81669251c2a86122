"""--filter programs in the SMTP server: exit codes, output forms, timeouts, floods."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig
from emailrelay.filters.result import SERVER
from emailrelay.filters.server import ServerFilters
from emailrelay.filters.spec import parse_chain
from emailrelay.smtp.server import Transaction
from emailrelay.smtp.session import StoredInfo
from emailrelay.spool.envelope import parse
from emailrelay.spool.store import Spool
from tests.support.helpers import new_message, script


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def run_filters(spool: Spool, specs: list[str], timeout: float = 10
                ) -> tuple[bool, str, StoredInfo, list[str]]:
    """Store a message as the server does, run --filter on it, publish if accepted."""
    filters = ServerFilters(parse_chain(specs)[0], FilterConfig(
        SERVER, spool, timeout, "example.com", spool.directory))
    rescans: list[str] = []
    filters.request_forward = rescans.append
    message = new_message(spool)
    info = StoredInfo(message, Transaction(), "127.0.0.1")
    ok, reply = asyncio.run(filters.before_publish(info))
    if ok:
        message._publish()
        for callback in info.after_publish:
            callback()
    else:
        message.abort()
    return ok, reply, info, rescans


def states(spool: Spool) -> list[str]:
    return sorted(p.name.split(".", 4)[-1] for p in spool.directory.iterdir())


@pytest.mark.parametrize(("code", "accepted", "reply", "rescan"), [
    (0, True, "", False),
    (1, False, "452 rejected", False),
    (99, False, "452 rejected", False),
    (100, False, "250 message processed", False),
    (101, True, "", False),
    (102, False, "250 message processed", True),
    (103, True, "", True),
    (104, False, "452 rejected", True),
    (105, False, "452 rejected", False),
    (200, False, "452 rejected", False),
])
def test_exit_codes(spool: Spool, tmp_path: Path, code: int, accepted: bool, reply: str,
                    rescan: bool) -> None:
    program = script(tmp_path, "f.sh", f"exit {code}\n")
    ok, text, _, rescans = run_filters(spool, [str(program)])
    assert (ok, text) == (accepted, reply)
    assert rescans == (["rescan"] if rescan else [])
    if reply.startswith("452"):
        assert states(spool) == ["content", "envelope.bad"]
        bad = parse(next(spool.directory.glob("*.bad")).read_bytes())
        assert bad.extra == ["X-MailRelay-Reason: rejected", "X-MailRelay-ReasonCode: 452"]
    else:
        # Accepted, or abandoned with the files left in place: published.
        assert states(spool) == ["content", "envelope"]


@pytest.mark.parametrize(("output", "reply", "reason", "code"), [
    ("<<550 go away>>\n<<spam score 99>>", "550 go away", "spam score 99", "550"),
    ("[[451 try later]]", "451 try later", "try later", "451"),
    ("some noise\n<<no thanks>>", "452 no thanks", "no thanks", "452"),
    ("", "452 rejected", "rejected", "452"),
])
def test_output_forms_become_reply_and_bad_reason(spool: Spool, tmp_path: Path, output: str,
                                                   reply: str, reason: str, code: str) -> None:
    body = "".join(f"echo '{line}'\n" for line in output.split("\n") if line)
    program = script(tmp_path, "f.sh", body + "exit 1\n")
    ok, text, _, _ = run_filters(spool, [str(program)])
    assert (ok, text) == (False, reply)
    bad = parse(next(spool.directory.glob("*.bad")).read_bytes())
    assert bad.extra == [f"X-MailRelay-Reason: {reason}", f"X-MailRelay-ReasonCode: {code}"]


def test_python_filter_edits_both_files(spool: Spool, tmp_path: Path) -> None:
    program = script(tmp_path, "edit.py", """
import sys
content, envelope = sys.argv[1], sys.argv[2]
assert envelope.endswith(".envelope.new"), envelope
with open(content, "ab") as f:
    f.write(b"X-Scanned: yes\\r\\n")
text = open(envelope, "rb").read().replace(b"b@example.net", b"c@example.org")
open(envelope, "wb").write(text)
""", sys.executable)
    ok, _, info, _ = run_filters(spool, [str(program)])
    assert ok
    envelope = parse(spool.envelope_path(info.message.id).read_bytes())
    assert envelope.to_remote == ["c@example.org"]
    assert spool.content_path(info.message.id).read_bytes().endswith(b"X-Scanned: yes\r\n")


def test_filter_that_deletes_the_message_and_exits_100(spool: Spool, tmp_path: Path) -> None:
    program = script(tmp_path, "eat.sh", 'rm -f "$1" "$2"\nexit 100\n')
    ok, reply, _, _ = run_filters(spool, [str(program)])
    assert (ok, reply) == (False, "250 message processed")
    assert states(spool) == []


def test_filter_that_deletes_the_message_and_fails(spool: Spool, tmp_path: Path) -> None:
    program = script(tmp_path, "eat.sh", 'rm -f "$1" "$2"\necho "<<gone>>"\nexit 1\n')
    ok, reply, _, _ = run_filters(spool, [str(program)])
    assert (ok, reply) == (False, "452 gone")
    assert states(spool) == []


def test_filter_sleeping_past_the_timeout_fails_the_message(spool: Spool,
                                                            tmp_path: Path) -> None:
    program = script(tmp_path, "sleep.sh", "sleep 30\n")
    ok, reply, _, _ = run_filters(spool, [str(program)], timeout=0.5)
    assert (ok, reply) == (False, "452 error")
    bad = parse(next(spool.directory.glob("*.bad")).read_bytes())
    assert bad.extra == ["X-MailRelay-Reason: timeout", "X-MailRelay-ReasonCode: 452"]


def test_filter_flooding_stdout(spool: Spool, tmp_path: Path) -> None:
    program = script(tmp_path, "flood.py", """
import sys
print("<<554 too chatty>>")
for _ in range(32):
    sys.stdout.write("y" * (1 << 20))
sys.exit(7)
""", sys.executable)
    ok, reply, _, _ = run_filters(spool, [str(program)])
    assert (ok, reply) == (False, "554 too chatty")


def test_missing_program(spool: Spool, tmp_path: Path) -> None:
    ok, reply, _, _ = run_filters(spool, [str(tmp_path / "nope")])
    assert (ok, reply) == (False, "452 rejected")
    bad = parse(next(spool.directory.glob("*.bad")).read_bytes())
    assert bad.extra[0] == "X-MailRelay-Reason: filter exec error: no such file or directory"


def test_chain_stops_at_the_first_rejection(spool: Spool, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    first = script(tmp_path, "first.sh", "exit 0\n")
    second = script(tmp_path, "second.sh", "echo '<<second says no>>'\nexit 3\n")
    third = script(tmp_path, "third.sh", f"touch {marker}\nexit 0\n")
    ok, reply, _, _ = run_filters(spool, [f"{first},{second}", str(third)])
    assert (ok, reply) == (False, "452 second says no")
    assert not marker.exists()


def test_exit_filters(spool: Spool) -> None:
    assert run_filters(spool, ["exit:0"])[:2] == (True, "")
    assert run_filters(spool, ["exit:1"])[:2] == (False, "452 rejected")
    assert run_filters(spool, ["exit:103"])[3] == ["rescan"]
    assert run_filters(spool, ["sleepms:10,exit:100"])[:2] == (False, "250 message processed")
