"""The spool: naming, states, locking, durability order, recovery and corrupt files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emailrelay.spool import durable, store
from emailrelay.spool.durable import GroupCommitter
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import Spool, SpoolError


def envelope() -> Envelope:
    return Envelope(from_="a@example.com", to_remote=["b@example.com"], client="127.0.0.1")


def store_one(spool: Spool, body: bytes = b"Subject: x\r\n\r\nhello\r\n") -> str:
    msg = spool.new_message(envelope())
    msg.write(body)
    msg.commit_sync()
    return msg.id


def test_names_follow_e_mailrelay(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = store_one(spool), store_one(spool)
    prefix, pid, seconds, seq = first.split(".")
    assert prefix == "emailrelay" and int(pid) == os.getpid()
    assert abs(int(seconds) - time.time()) < 5
    assert int(second.split(".")[3]) == int(seq) + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{first}.content", f"{first}.envelope", f"{second}.content", f"{second}.envelope"])


def test_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new-spool")
    message_id = store_one(spool)
    assert (tmp_path / "new-spool").stat().st_mode & 0o777 == 0o700
    for path in (spool.content_path(message_id), spool.envelope_path(message_id)):
        assert path.stat().st_mode & 0o077 == 0


def test_message_is_invisible_until_committed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    msg = spool.new_message(envelope())
    msg.write(b"partial")
    assert spool.ready() == []
    assert msg.new_envelope_path.exists()
    msg.abort()
    assert list(tmp_path.iterdir()) == []


def _record_flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_fsync, real_fdatasync, real_rename = os.fsync, os.fdatasync, os.rename
    real_syncfs = durable.sync_filesystem
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "fdatasync",
                        lambda fd: (calls.append("fdatasync"), real_fdatasync(fd))[1])
    monkeypatch.setattr(os, "rename", lambda a, b: (calls.append("rename"), real_rename(a, b))[1])
    monkeypatch.setattr(durable, "sync_filesystem",
                        lambda fd: (calls.append("syncfs"), real_syncfs(fd))[1])
    return calls


def test_commit_flushes_files_before_the_rename_and_the_directory_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_flushes(monkeypatch)
    spool = Spool(tmp_path)
    msg = spool.new_message(envelope())
    msg.write(b"x\r\n")

    async def commit() -> None:
        committer = GroupCommitter()
        try:
            await msg.commit(committer)
        finally:
            committer.close()

    asyncio.run(commit())
    if durable.syncfs_available():
        assert calls == ["syncfs", "rename", "fsync"]
    else:
        assert calls == ["fsync", "fsync", "rename", "fsync"]


def test_synchronous_commit_flushes_each_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_flushes(monkeypatch)
    spool = Spool(tmp_path)
    msg = spool.new_message(envelope())
    msg.write(b"x\r\n")
    msg.commit_sync()
    assert calls == ["fsync", "fsync", "rename", "fsync"]


def test_group_commit_shares_flushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not durable.syncfs_available():
        pytest.skip("no syncfs here: each message flushes its own files")
    calls = _record_flushes(monkeypatch)
    real = durable.sync_filesystem

    def slow_syncfs(fd: int) -> None:
        calls.append("syncfs")
        time.sleep(0.01)  # a slow disk, so that sessions pile up behind one flush
        real(fd)

    monkeypatch.setattr(durable, "sync_filesystem", slow_syncfs)
    spool = Spool(tmp_path)

    async def many() -> None:
        committer = GroupCommitter()
        try:
            messages = [spool.new_message(envelope()) for _ in range(40)]
            for m in messages:
                m.write(b"hello\r\n")
            await asyncio.gather(*(m.commit(committer) for m in messages))
        finally:
            committer.close()

    asyncio.run(many())
    assert len(spool.ready()) == 40
    assert calls.count("rename") == 40
    assert 1 <= calls.count("syncfs") < 20  # file flushes, shared
    assert 1 <= calls.count("fsync") < 20  # directory flushes, shared


def test_lock_release_fail_and_delete(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store_one(spool)
    locked = spool.lock(message_id)
    assert locked is not None and locked.envelope.to_remote == ["b@example.com"]
    assert spool.lock(message_id) is None  # nobody gets it twice
    assert spool.envelope_path(message_id, ".busy").exists()
    locked.release()
    assert spool.ready() == [message_id]
    locked = spool.lock(message_id)
    assert locked is not None
    locked.fail("550 mailbox unavailable", 550)
    bad = spool.envelope_path(message_id, ".bad").read_bytes()
    assert bad.endswith(b"X-MailRelay-End: 1\r\nX-MailRelay-Reason: 550 mailbox unavailable\r\n"
                        b"X-MailRelay-ReasonCode: 550\r\n")
    assert spool.unfail_all() == 1
    locked = spool.lock(message_id)
    assert locked is not None
    locked.delete()
    assert list(tmp_path.iterdir()) == []


def test_reason_code_zero_is_written_without_a_value(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store_one(spool)
    locked = spool.lock(message_id)
    assert locked is not None
    locked.fail("connection\r\nrefused")
    assert spool.envelope_path(message_id, ".bad").read_bytes().endswith(
        b"X-MailRelay-Reason: connection refused\r\nX-MailRelay-ReasonCode:\r\n")


def test_another_process_cannot_lock_a_busy_message(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store_one(spool)
    code = ("import sys; from emailrelay.spool.store import Spool;"
            f"sys.exit(0 if Spool({str(tmp_path)!r}).lock({message_id!r}) is None else 1)")
    held = spool.lock(message_id)
    assert held is not None
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    held.release()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 1


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_recovery_removes_unfinished_and_requeues_busy(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    dead = _dead_pid()
    unfinished = f"emailrelay.{dead}.1700000000.1"
    (tmp_path / f"{unfinished}.content").write_bytes(b"half a messa")
    (tmp_path / f"{unfinished}.envelope.new").write_bytes(envelope().to_bytes())
    busy = f"emailrelay.{dead}.1700000000.2"
    (tmp_path / f"{busy}.content").write_bytes(b"whole\r\n")
    (tmp_path / f"{busy}.envelope.busy").write_bytes(envelope().to_bytes())
    good = store_one(spool)
    with caplog.at_level("WARNING"):
        spool.recover()
    assert not (tmp_path / f"{unfinished}.content").exists()
    assert not (tmp_path / f"{unfinished}.envelope.new").exists()
    assert spool.ready() == sorted([busy, good])
    assert "never acknowledged" in caplog.text and "returned" in caplog.text


def test_recovery_leaves_files_of_live_writers_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writing = spool.new_message(envelope())  # holds the flock, like a live session
    writing.write(b"in progress")
    other = Spool(tmp_path)
    other.recover()
    assert writing.new_envelope_path.exists() and writing.content_path.exists()
    writing.abort()


def test_orphan_content_is_set_aside_only_when_old(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    young = tmp_path / "emailrelay.1.1700000000.1.content"
    old = tmp_path / "emailrelay.1.1700000000.2.content"
    young.write_bytes(b"x")
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    spool.recover()
    assert young.exists()
    assert not old.exists() and (tmp_path / (old.name + ".orphan")).exists()


def test_content_referenced_from_a_mailbox_is_not_an_orphan(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    content = tmp_path / "emailrelay.1.1700000000.3.content"
    content.write_bytes(b"x")
    os.utime(content, (time.time() - 7200, time.time() - 7200))
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "emailrelay.1.1700000000.3.envelope").write_bytes(b"")
    spool.recover()
    assert content.exists()


def test_corrupt_envelope_is_set_aside_as_bad(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    good = store_one(spool)
    corrupt = "emailrelay.1.1700000000.9"
    (tmp_path / f"{corrupt}.content").write_bytes(b"x")
    (tmp_path / f"{corrupt}.envelope").write_bytes(b"X-MailRelay-Format: #2821.8\r\ngarbage\r\n")
    results = [spool.lock(i) for i in spool.ready()]
    assert [r.id for r in results if r] == [good]
    text = spool.envelope_path(corrupt, ".bad").read_text()
    assert "X-MailRelay-Reason: invalid envelope file" in text


def test_envelope_without_content_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store_one(spool)
    spool.content_path(message_id).unlink()
    assert spool.lock(message_id) is None
    assert "no content file" in spool.envelope_path(message_id, ".bad").read_text()


def test_foreign_names_are_ignored_and_any_emailrelay_name_is_picked_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "README").write_text("x")
    (tmp_path / "emailrelay.x.envelope.tmp").write_text("x")
    (tmp_path / "emailrelay.other-tool.42.envelope").write_bytes(envelope().to_bytes())
    (tmp_path / "emailrelay.other-tool.42.content").write_bytes(b"x")
    assert spool.ready() == ["emailrelay.other-tool.42"]


def test_unusable_directory_is_an_error(tmp_path: Path) -> None:
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    with pytest.raises(SpoolError, match="not a directory"):
        Spool(plain_file)
    with pytest.raises(SpoolError, match="cannot create"):
        Spool(plain_file / "sub")


def test_tmpfs_is_detected() -> None:
    assert store.is_tmpfs(Path("/dev/shm")) or not Path("/dev/shm").exists()
    assert not store.is_tmpfs(Path(__file__))


def test_one_failed_rename_does_not_fail_the_rest_of_the_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    async def batch() -> list[BaseException | None]:
        committer = GroupCommitter()
        try:
            messages = [spool.new_message(envelope()) for _ in range(5)]
            for m in messages:
                m.write(b"hello\r\n")
            messages[2].new_envelope_path.unlink()  # its rename will fail
            results = await asyncio.gather(*(m.commit(committer) for m in messages),
                                           return_exceptions=True)
            return list(results)
        finally:
            committer.close()

    results = asyncio.run(batch())
    assert [r is None for r in results] == [True, True, False, True, True]
    assert isinstance(results[2], FileNotFoundError)
    assert len(spool.ready()) == 4
    assert len(list(tmp_path.glob("*.content"))) == 4  # the failed one left nothing
