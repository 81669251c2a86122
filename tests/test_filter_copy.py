"""The copy: filter function and the emailrelay-filter-copy program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emailrelay.filters import copy as copy_filter
from emailrelay.filters.copy import CopyError, copy_message, copy_to_mailboxes
from emailrelay.spool.envelope import Envelope, parse
from emailrelay.spool.store import NEW, Spool
from tests.support.logs import captured_log

BODY = b"Subject: copy me\r\n\r\nhello\r\n"


def new_message(spool: Spool, *, publish: bool = False) -> str:
    """A message as a --filter sees it (``.envelope.new``), or a ready one."""
    msg = spool.new_message(Envelope(from_="a@example.com", to_remote=["b@example.com"]))
    msg.write(BODY)
    msg.commit_sync()
    if not publish:
        os.rename(spool.envelope_path(msg.id), spool.envelope_path(msg.id, NEW))
    return msg.id


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    for name in ("alice", "bob", "postmaster", ".hidden"):
        (tmp_path / name).mkdir()
    return Spool(tmp_path)


def test_full_copies_and_the_original_is_removed(spool: Spool) -> None:
    message_id = new_message(spool)
    result = copy_to_mailboxes(spool, message_id, NEW)
    assert result.copied_to == ["alice", "bob"] and result.not_copied_to == ["postmaster"]
    assert result.deleted
    for user in ("alice", "bob"):
        assert names(spool.directory / user) == [f"{message_id}.content",
                                                 f"{message_id}.envelope"]
        assert (spool.directory / user / f"{message_id}.content").read_bytes() == BODY
        mode = (spool.directory / user / f"{message_id}.envelope").stat().st_mode
        assert mode & 0o077 == 0
    assert names(spool.directory) == [".hidden", "alice", "bob", "postmaster"]
    assert names(spool.directory / "postmaster") == [] == names(spool.directory / ".hidden")


def test_pop_copies_envelopes_and_keeps_the_content(spool: Spool) -> None:
    message_id = new_message(spool)
    assert copy_to_mailboxes(spool, message_id, NEW, pop=True).deleted
    assert names(spool.directory / "alice") == [f"{message_id}.envelope"]
    assert spool.content_path(message_id).exists()
    assert not spool.envelope_path(message_id, NEW).exists()
    copied = parse((spool.directory / "bob" / f"{message_id}.envelope").read_bytes())
    assert copied.from_ == "a@example.com" and copied.to_remote == ["b@example.com"]


def test_hardlink_shares_the_content_file(spool: Spool) -> None:
    message_id = new_message(spool)
    copy_to_mailboxes(spool, message_id, NEW, hardlink=True, nodelete=True)
    original = spool.content_path(message_id).stat()
    linked = (spool.directory / "alice" / f"{message_id}.content").stat()
    assert original.st_ino == linked.st_ino and original.st_nlink == 3


def test_nodelete_keeps_the_original(spool: Spool) -> None:
    message_id = new_message(spool)
    result = copy_to_mailboxes(spool, message_id, NEW, nodelete=True)
    assert not result.deleted and result.copied_to == ["alice", "bob"]
    assert spool.envelope_path(message_id, NEW).exists() and spool.content_path(
        message_id).exists()


def test_a_maildir_gets_the_content_as_new_mail(spool: Spool) -> None:
    for part in ("tmp", "new", "cur"):
        (spool.directory / "bob" / part).mkdir()
    message_id = new_message(spool)
    copy_to_mailboxes(spool, message_id, NEW, pop=True)
    (mail,) = (spool.directory / "bob" / "new").iterdir()
    assert mail.read_bytes() == BODY
    assert names(spool.directory / "bob" / "tmp") == [] == names(spool.directory / "bob" / "cur")
    assert names(spool.directory / "bob") == ["cur", "new", "tmp"]
    assert spool.content_path(message_id).exists()  # alice's envelope still refers to it


def test_maildir_only_mailboxes_leave_no_orphan_content(tmp_path: Path) -> None:
    for part in ("tmp", "new", "cur"):
        (tmp_path / "bob" / part).mkdir(parents=True)
    spool = Spool(tmp_path)
    message_id = new_message(spool)
    copy_to_mailboxes(spool, message_id, NEW, pop=True)
    assert names(tmp_path) == ["bob"]


def test_no_subdirectories_is_a_warning_once_and_nothing_changes(tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(copy_filter, "_warned_no_subdirectories", False)
    spool = Spool(tmp_path)
    (tmp_path / "postmaster").mkdir()
    first, second = new_message(spool), new_message(spool)
    with captured_log() as lines:
        assert copy_to_mailboxes(spool, first, NEW).copied_to == []
        assert not copy_to_mailboxes(spool, second, NEW).deleted
    assert lines == [f"warning: copy filter: no sub-directories of [{tmp_path}] to copy in to"]
    assert spool.envelope_path(first, NEW).exists()


def test_a_failed_copy_leaves_the_original(spool: Spool) -> None:
    message_id = new_message(spool)
    (spool.directory / "bob" / f"{message_id}.envelope").mkdir()  # cannot be replaced
    with pytest.raises(CopyError, match=r"sub-directory \[bob\]"):
        copy_to_mailboxes(spool, message_id, NEW)
    assert spool.envelope_path(message_id, NEW).exists()
    assert spool.content_path(message_id).read_bytes() == BODY


def test_the_copy_is_logged(spool: Spool) -> None:
    message_id = new_message(spool)
    with captured_log() as lines:
        copy_to_mailboxes(spool, message_id, NEW)
    assert lines == [f"info: copy: {message_id} copied to [alice,bob] not [postmaster]"]


def test_the_filter_chain_entry_point_returns_exit_codes(spool: Spool) -> None:
    message_id = new_message(spool)
    content, envelope = spool.content_path(message_id), spool.envelope_path(message_id, NEW)
    assert copy_message(spool.directory, content, envelope, nodelete=True) == 0
    assert names(spool.directory / "alice") == [f"{message_id}.content",
                                                f"{message_id}.envelope"]
    other = new_message(spool)
    content, envelope = spool.content_path(other), spool.envelope_path(other, NEW)
    assert copy_message(spool.directory, content, envelope, pop=True) == 100
    assert not envelope.exists() and content.exists()


def test_the_entry_point_reports_failures_as_exit_code_1(spool: Spool) -> None:
    message_id = new_message(spool)
    content, envelope = spool.content_path(message_id), spool.envelope_path(message_id, NEW)
    (spool.directory / "bob" / f"{message_id}.envelope").mkdir()  # cannot be replaced
    with captured_log() as lines:
        assert copy_message(spool.directory, content, envelope) == 1
        assert copy_message(spool.directory, content, spool.directory / "x.envelope") == 1
    assert lines[0].startswith("error: copy filter: failed to copy message files into "
                               "sub-directory [bob]")
    assert lines[1].startswith("error: copy filter: not a spooled message")
    assert envelope.exists()


# -- the program ------------------------------------------------------------------------------

def program(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "emailrelay-filter-copy"
    command = [str(script)] if script.exists() else [sys.executable, "-m",
                                                     "emailrelay.cli.filter_copy"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)


def test_program_as_a_filter_copies_envelopes_and_exits_100(spool: Spool) -> None:
    message_id = new_message(spool)
    content = spool.content_path(message_id)
    done = program(str(content), str(spool.envelope_path(message_id, NEW)))
    assert (done.returncode, done.stdout) == (100, "")
    assert names(spool.directory / "alice") == [f"{message_id}.envelope"]
    assert names(spool.directory / "bob") == [f"{message_id}.envelope"]
    assert not spool.envelope_path(message_id, NEW).exists() and content.exists()


def test_program_finds_the_envelope_by_itself(spool: Spool) -> None:
    message_id = new_message(spool, publish=True)
    assert program(str(spool.content_path(message_id))).returncode == 100
    assert spool.ready() == []


@pytest.mark.parametrize(("args", "reason"), [
    ([], "usage error: must be run by emailrelay with the full path of a message content file"),
    (["{dir}/absent.content"], "no such file"),
    (["{dir}/notes.txt"], "invalid filename"),
    (["{dir}/emailrelay.1.2.3.content"],
     "no envelope file \"{dir}/emailrelay.1.2.3.envelope.new\""),
    (["{dir}/emailrelay.1.2.3.content", "{dir}/other.envelope"],
     "invalid envelope file name \"{dir}/other.envelope\""),
])
def test_program_failures_are_reported_as_a_filter_does(tmp_path: Path, args: list[str],
                                                        reason: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "emailrelay.1.2.3.content").write_text("x")
    done = program(*(a.format(dir=tmp_path) for a in args))
    assert done.returncode == 1
    assert done.stdout == f"<<filter failed>>\n<<{reason.format(dir=tmp_path)}>>\n"


def test_program_without_subdirectories_fails(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = new_message(spool)
    done = program(str(spool.content_path(message_id)))
    assert done.returncode == 1
    assert done.stdout == ("<<filter failed>>\n<<no sub-directories to copy into (check "
                           "permissions)>>\n")
    assert spool.envelope_path(message_id, NEW).exists()


def test_program_spool_mode_copies_every_waiting_message(spool: Spool) -> None:
    ids = [new_message(spool, publish=True) for _ in range(2)]
    arriving = new_message(spool)  # .new: not waiting yet
    done = program("-v", "--spool-dir", str(spool.directory))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("copied: ") == 4
    assert names(spool.directory / "alice") == sorted(f"{i}.envelope" for i in ids)
    assert spool.ready() == [] and spool.envelope_path(arriving, NEW).exists()
    assert program("-d", str(spool.directory)).returncode == 0


def test_program_help_and_usage_errors(tmp_path: Path) -> None:
    done = program("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: emailrelay-filter-copy")
    done = program("--spool-dir")
    assert done.returncode == 1 and "usage error" in done.stderr
    done = program("--spool-dir", str(tmp_path / "absent"))
    assert done.returncode == 1 and "emailrelay-filter-copy: spool directory" in done.stderr
