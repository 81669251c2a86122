"""deliver: into plain and maildir mailboxes, and msgid:."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.chain import FilterChain
from emailrelay.filters.msgid import FormatError, has_message_id
from emailrelay.filters.result import SERVER, Verdict
from emailrelay.filters.spec import parse_chain
from emailrelay.spool.envelope import Envelope, parse
from emailrelay.spool.store import Spool
from tests.support.helpers import CONTENT, new_message


def run(spool: Spool, spec: str, message, delivery: Path | None = None):  # type: ignore[no-untyped-def]
    config = FilterConfig(SERVER, spool, 10, "example.com", delivery or spool.directory)
    return asyncio.run(FilterChain(parse_chain([spec])[0], config).run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))


def test_deliver_to_plain_mailboxes_and_keep_remote(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(from_="a@example.org", to_local=["bob", "alice", "bob"],
                                          to_remote=["carol@example.net"]))
    result = run(spool, "deliver:", message)
    assert result.verdict is Verdict.OK  # still to be forwarded to carol
    for mailbox in ("alice", "bob"):
        box = spool.directory / mailbox
        assert sorted(p.name for p in box.iterdir()) == [f"{message.id}.content",
                                                         f"{message.id}.envelope"]
        assert (box / f"{message.id}.content").read_bytes() == CONTENT
        assert parse((box / f"{message.id}.envelope").read_bytes()).to_local == \
            ["bob", "alice", "bob"]
        assert (box.stat().st_mode & 0o777) == 0o700
    assert message.new_envelope_path.exists() and message.content_path.exists()


def test_deliver_local_only_removes_the_original(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    delivery = tmp_path / "mail"
    delivery.mkdir()
    message = new_message(spool, Envelope(to_local=["bob"]))
    result = run(spool, "deliver:hardlink", message, delivery)
    assert result.verdict is Verdict.ABANDON
    assert not message.new_envelope_path.exists() and not message.content_path.exists()
    assert (delivery / "bob" / f"{message.id}.content").read_bytes() == CONTENT
    assert (delivery / "bob" / f"{message.id}.content").stat().st_nlink == 1


def test_deliver_nodelete_and_hardlink(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(to_local=["bob"]))
    assert run(spool, "deliver:hardlink;nodelete", message).verdict is Verdict.OK
    assert message.content_path.stat().st_nlink == 2


def test_deliver_into_maildir_new(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    maildir = spool.directory / "bob"
    for sub in ("tmp", "cur", "new"):
        (maildir / sub).mkdir(parents=True)
    message = new_message(spool, Envelope(to_local=["bob"]))
    run(spool, "deliver:n", message)
    files = list((maildir / "new").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == CONTENT
    assert re.fullmatch(r"\d+\.\d{6}\.\d+\.[^./]+\.\d+", files[0].name)
    assert not list((maildir / "tmp").iterdir()) and not list((maildir / "cur").iterdir())


@pytest.mark.parametrize("mailbox", ["../escape", "a/b", "..", "bad\x07"])
def test_deliver_refuses_bad_mailbox_names(tmp_path: Path, mailbox: str) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(to_local=[mailbox]))
    result = run(spool, "deliver:", message)
    assert result.verdict is Verdict.FAIL and "invalid mailbox name" in result.reason
    assert not (tmp_path / "escape").exists()
    assert message.content_path.exists()


def test_deliver_without_local_recipients_does_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool)
    assert run(spool, "deliver:", message).verdict is Verdict.OK
    assert [p.name for p in spool.directory.iterdir() if p.is_dir()] == []


def test_msgid_adds_a_message_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool)
    assert run(spool, "msgid:", message).verdict is Verdict.OK
    content = message.content_path.read_bytes()
    assert re.match(rb"Message-ID: <\d+\.\d{6}\.\d+\.\d+@example\.com>\r\n", content)
    assert content.endswith(CONTENT)


def test_msgid_keeps_an_existing_message_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    text = b"Subject: x\r\nmessage-id: <a@b>\r\n\r\nbody\r\n"
    message = new_message(spool, content=text)
    run(spool, "msgid:", message)
    assert message.content_path.read_bytes() == text


@pytest.mark.parametrize("content", [b"Subject: no end of headers", b"X: " + b"y" * 20000])
def test_msgid_format_errors_fail_the_message(tmp_path: Path, content: bytes) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, content=content)
    result = run(spool, "msgid:", message)
    assert result.verdict is Verdict.FAIL and result.reason == "format error"
    assert message.content_path.read_bytes() == content


def test_message_id_header_scan() -> None:
    import io
    assert has_message_id(io.BytesIO(b"Message-Id: <x>\n\nbody"))
    assert not has_message_id(io.BytesIO(b"X-Message-ID: <x>\r\n\r\nMessage-ID: <y>\r\n"))
    with pytest.raises(FormatError):
        has_message_id(io.BytesIO(b""))
