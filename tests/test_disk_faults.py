"""Disk faults: a full spool (a 1 MB tmpfs), a read-only spool, and spool files deleted or
edited under a running relay.  Each case checks what the client is told, that nothing
half-written becomes visible, and that the relay carries on once the fault is gone."""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.fakesmtp import FakeSmtpServer
from tests.support.spooling import spool_message, spool_state

pytestmark = pytest.mark.slow


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """A spool directory on its own 1 MB tmpfs (needs root and mount)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(spool))
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    try:
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def send(port: int, body: bytes) -> tuple[int, bytes]:
    """Send one message; the reply to its data (or to whatever refused it first)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        try:
            smtp.sendmail("a@example.com", ["b@example.com"], body)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


def message(size: int, tag: str = "") -> bytes:
    head = f"Subject: disk {tag}\r\n\r\n".encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    return head + line * max(1, size // len(line))


def visible_messages(spool: Path) -> dict[str, str]:
    """Every envelope that a forwarder or POP client could see, with its state."""
    return {k: v for k, v in spool_state(spool).items() if v != "new"}


def leftovers(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir() if p.name.startswith("emailrelay."))


def fill(spool: Path, leave: int) -> Path:
    """Take all the free space of the spool's file system but ``leave`` bytes."""
    filler = spool / "filler"
    st = os.statvfs(spool)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_spool_gets_452_leaves_nothing_and_recovers(start_relay, small_spool: Path) -> None:
    relay = start_relay(spool=small_spool)
    # Bigger than the whole file system: refused at the end of the data, nothing left.
    assert send(relay.port, message(2 << 20, "too big")) == (
        452, b"insufficient system storage")
    assert leftovers(small_spool) == []
    assert "cannot write to the spool directory" in relay.log()
    # Full to the last byte: even a small message is refused.
    filler = fill(small_spool, 0)
    assert send(relay.port, message(10_000, "full"))[0] == 452
    assert leftovers(small_spool) == []
    # Space returns: the same relay takes mail again, whole.
    filler.unlink()
    assert send(relay.port, message(10_000, "after"))[0] == 250
    ((message_id, state),) = visible_messages(small_spool).items()
    assert state == "ready"
    assert b"Subject: disk after" in (small_spool / f"{message_id}.content").read_bytes()
    assert relay.process.poll() is None


def test_at_every_point_of_running_out_a_message_is_whole_or_absent(
        start_relay, small_spool: Path) -> None:
    """Free space just below, at and above what each message needs: the content, the
    envelope or the fsync runs out in turn.  A 250 means a complete message in the spool;
    any refusal means no trace of it."""
    relay = start_relay(spool=small_spool)
    outcomes = set()
    for leave in range(0, 40_000, 4096):
        filler = fill(small_spool, leave)
        before = set(visible_messages(small_spool))
        code, _ = send(relay.port, message(20_000, f"leave {leave}"))
        after = visible_messages(small_spool)
        new = set(after) - before
        outcomes.add(code)
        if code == 250:
            (message_id,) = new
            content = (small_spool / f"{message_id}.content").read_bytes()
            assert content.endswith(b"xyz\r\n") and f"leave {leave}".encode() in content
            envelope = parse((small_spool / f"{message_id}.envelope").read_bytes())
            assert envelope.to_remote == ["b@example.com"]
        else:
            assert code == 452, code
            assert new == set()
            assert not [n for n in leftovers(small_spool) if n.endswith(".new")]
        filler.unlink()
        for message_id in new:  # make room for the next round
            for path in small_spool.glob(f"{message_id}.*"):
                path.unlink()
    assert outcomes == {250, 452}
    assert relay.process.poll() is None


def test_a_read_only_spool_refuses_and_recovers(start_relay, small_spool: Path) -> None:
    relay = start_relay(spool=small_spool)
    _mount("-o", "remount,ro", str(small_spool))
    try:
        code, text = send(relay.port, message(1000, "ro"))
    finally:
        _mount("-o", "remount,rw", str(small_spool))
    assert (code, text) == (554, b"transaction failed")  # E-MailRelay's reply
    assert "Read-only file system" in relay.log()
    assert leftovers(small_spool) == []
    assert send(relay.port, message(1000, "rw"))[0] == 250
    assert list(visible_messages(small_spool).values()) == ["ready"]


def test_files_deleted_or_edited_under_the_relay(tmp_path: Path, start_relay) -> None:
    """Queued messages damaged before a forwarding run: each is sent whole, set aside as
    .bad with a reason, or (deleted) simply gone; the relay goes on with the rest.

    Regression: an unreadable envelope used to be skipped silently on every run, for ever."""
    spool = tmp_path / "spool"
    ids = {name: spool_message(spool, content=f"Subject: {name}\r\n\r\nbody\r\n".encode())
           for name in ("intact", "envelope deleted", "content deleted", "content truncated",
                        "envelope garbage", "envelope emptied", "intact too")}
    (spool / f"{ids['envelope deleted']}.envelope").unlink()
    (spool / f"{ids['content deleted']}.content").unlink()
    (spool / f"{ids['content truncated']}.content").write_bytes(b"Subject: content trun")
    (spool / f"{ids['envelope garbage']}.envelope").write_bytes(os.urandom(300))
    (spool / f"{ids['envelope emptied']}.envelope").write_bytes(b"")
    with FakeSmtpServer() as far:
        relay = start_relay("--forward-to", far.address, "--poll", "1", spool=spool)
        subjects = sorted(m.content.split(b"\r\n")[0] for m in far.wait_for(3))
        relay.wait_for_log("no more messages to send")
        assert relay.process.poll() is None
    assert subjects == [b"Subject: content trun", b"Subject: intact", b"Subject: intact too"]
    state = spool_state(spool)
    assert state == {ids["content deleted"]: "bad", ids["envelope garbage"]: "bad",
                     ids["envelope emptied"]: "bad"}
    log = relay.log()
    assert "no content file" in log and "invalid envelope file" in log
    # The content whose envelope vanished is not sent, not lost from view: it stays until
    # start-up recovery sets it aside as .orphan (after an hour, in case a writer is slow).
    assert (spool / f"{ids['envelope deleted']}.content").exists()


def test_a_queued_envelope_deleted_while_the_relay_runs(tmp_path: Path, start_relay) -> None:
    spool = tmp_path / "spool"
    with FakeSmtpServer() as far:
        relay = start_relay("--forward-to", far.address, "--poll", "2", spool=spool)
        keep = spool_message(spool, content=b"Subject: keep\r\n\r\nx\r\n")
        gone = spool_message(spool, content=b"Subject: gone\r\n\r\nx\r\n")
        (spool / f"{gone}.envelope").unlink()
        (spool / f"{gone}.content").unlink()
        (received,) = far.wait_for(1)
        relay.wait_for_log("no more messages to send")
        assert received.content.startswith(b"Subject: keep")
        assert keep not in spool_state(spool)
        assert relay.process.poll() is None
