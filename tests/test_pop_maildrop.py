"""Maildrops in the spool: listing, locking, busy messages, pop-by-name and shared content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emailrelay.spool.envelope import Envelope
from emailrelay.spool.store import (
    MailboxNameError,
    Spool,
    deliver_to_mailbox,
    valid_mailbox_name,
)


def store(spool: Spool, body: bytes = b"Subject: x\r\n\r\nhello\r\n") -> str:
    msg = spool.new_message(Envelope(from_="a@example.com", to_remote=["b@example.com"]))
    msg.write(body)
    msg.commit_sync()
    return msg.id


def copy_envelope(spool: Spool, message_id: str, user: str, *, full: bool = False) -> None:
    deliver_to_mailbox(spool.mailbox(user), message_id, spool.content_path(message_id),
                       spool.envelope_path(message_id), envelope_only=not full)


def test_listing_has_ready_messages_oldest_first_and_nothing_else(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = [store(spool) for _ in range(3)]
    # Same second and pid: the sequence number orders them, 10 after 9.
    late = "emailrelay.1.2000000000.10"
    early = "emailrelay.1.2000000000.9"
    for message_id in (late, early):
        (tmp_path / f"{message_id}.content").write_bytes(b"x\r\n")
        (tmp_path / f"{message_id}.envelope").write_bytes(b"")
    busy = spool.lock(ids[1])  # being forwarded
    assert busy is not None
    spool.new_message(Envelope(from_="x@y")).write(b"still arriving")  # .new
    os.rename(spool.envelope_path(ids[2]), spool.envelope_path(ids[2], ".bad"))
    (tmp_path / "emailrelay.9.9.9.envelope").write_bytes(b"")  # no content: skipped
    (tmp_path / "unrelated.txt").write_bytes(b"")
    listed = spool.maildrop().messages()
    assert [m.id for m in listed] == [ids[0], early, late]
    assert listed[0].content_path == spool.content_path(ids[0]) and not listed[0].in_parent


def test_one_session_per_maildrop(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = spool.maildrop(), spool.maildrop()
    assert first.lock()
    assert not second.lock()
    assert spool.maildrop("alice").lock()  # another maildrop is independent
    first.unlock()
    assert second.lock()


def test_open_refuses_a_message_a_forwarder_holds_or_took(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    maildrop = spool.maildrop()
    (listed,) = maildrop.messages()
    opened = maildrop.open(listed)
    assert opened is not None and opened.file.read() == b"Subject: x\r\n\r\nhello\r\n"
    assert spool.lock(message_id) is None  # a forwarder cannot take it while it is served
    opened.close()
    taken = spool.lock(message_id)
    assert taken is not None  # now it can: .busy
    assert maildrop.open(listed) is None
    assert maildrop.delete([listed]) == [listed]  # never deleted while busy
    assert spool.envelope_path(message_id, ".busy").exists()
    taken.release()
    assert maildrop.delete([listed]) == []
    assert list(tmp_path.iterdir()) == []


def test_deleting_a_message_that_is_already_gone_is_fine(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    maildrop = spool.maildrop()
    (listed,) = maildrop.messages()
    spool.envelope_path(message_id).unlink()
    assert maildrop.delete([listed]) == []


def test_pop_by_name_uses_the_main_content_and_deletes_it_with_the_last_envelope(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    copy_envelope(spool, message_id, "alice")
    copy_envelope(spool, message_id, "bob")
    spool.delete_message(message_id, "")  # as copy:pop does
    content = spool.content_path(message_id)
    assert content.exists()

    alice = spool.maildrop("alice")
    (listed,) = alice.messages()
    assert listed.in_parent and listed.content_path == content
    assert alice.delete([listed]) == []
    assert content.exists()  # bob still needs it

    bob = spool.maildrop("bob")
    assert bob.delete(bob.messages()) == []
    assert not content.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "bob"]


def test_pop_by_name_keeps_content_the_main_spool_still_forwards(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    copy_envelope(spool, message_id, "alice")  # copy:pop;nodelete
    alice = spool.maildrop("alice")
    assert alice.delete(alice.messages()) == []
    assert spool.content_path(message_id).exists() and spool.ready() == [message_id]


def test_a_subdirectory_with_its_own_content(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    copy_envelope(spool, message_id, "carol", full=True)
    spool.delete_message(message_id, "")
    assert not spool.content_path(message_id).exists()  # nobody refers to the main one
    carol = spool.maildrop("carol")
    (listed,) = carol.messages()
    assert not listed.in_parent and listed.content_path.parent.name == "carol"
    assert carol.delete([listed]) == []
    assert list((tmp_path / "carol").iterdir()) == []


def test_main_spool_maildrop_keeps_content_that_a_mailbox_envelope_needs(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    message_id = store(spool)
    copy_envelope(spool, message_id, "alice")
    maildrop = spool.maildrop()
    assert maildrop.delete(maildrop.messages()) == []
    assert spool.content_path(message_id).exists()
    assert [m.id for m in spool.maildrop("alice").messages()] == [message_id]


def test_maildrops_are_created_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    maildrop = spool.maildrop("alice")
    assert maildrop.by_name and maildrop.directory == tmp_path / "alice"
    assert (tmp_path / "alice").stat().st_mode & 0o777 == 0o700
    assert spool.maildrop("alice").directory == tmp_path / "alice"  # already there: fine


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "/abs", ".hidden", "a..b",
                                  "nul\0byte", "tab\tname", "new\nline", "x" * 256,
                                  "bad\udcffbyte"])
def test_names_that_could_escape_the_spool_are_refused(tmp_path: Path, name: str) -> None:
    spool = Spool(tmp_path / "spool")
    assert not valid_mailbox_name(name)
    with pytest.raises(MailboxNameError):
        spool.maildrop(name)
    assert list((tmp_path / "spool").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool"]


@pytest.mark.parametrize("name", ["alice", "bob@example.com", "Mary Smith", "user.name",
                                  "postmaster", "ünïcode", "x" * 255])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert valid_mailbox_name(name)
