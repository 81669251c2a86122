"""spam: and spam-edit: against a real SpamAssassin spamd, and the response reader."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import SERVER, Verdict
from emailrelay.filters.spamd import SpamdError, SpamdResponse, SpamFilter, request_head
from emailrelay.spool.store import Spool
from tests.support.helpers import GTUBE, Spamd

CLEAN = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: lunch\r\n"
         b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
         b"Shall we meet at noon?\r\n")
SPAM = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: offer\r\n\r\n"
        + GTUBE.encode() + b"\r\n")


@pytest.fixture(scope="module")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spamd]:
    if shutil.which("spamd") is None:
        pytest.skip("spamd is not installed (Debian packages spamassassin and spamd: "
                    "make test installs them when run as root)")
    server = Spamd(tmp_path_factory.mktemp("spamd"))
    yield server
    server.stop()


def run_spam(spamd: Spamd, tmp_path: Path, content: bytes, *, edit: bool):
    spool = Spool(tmp_path / "spool")
    path = spool.content_path("emailrelay.1.2.3")
    path.write_bytes(content)
    f = SpamFilter(f"127.0.0.1:{spamd.port}",
                   FilterConfig(SERVER, spool, 60, "example.com", spool.directory), edit=edit)
    result = asyncio.run(f.run(FilterJob("emailrelay.1.2.3", path, path.with_suffix(".x"))))
    return result, path.read_bytes()


def test_spam_rejects_gtube(spamd: Spamd, tmp_path: Path) -> None:
    result, content = run_spam(spamd, tmp_path, SPAM, edit=False)
    assert result.verdict is Verdict.FAIL and result.response == "rejected"
    assert result.reason.startswith("spam: True ; ")
    assert content == SPAM  # spam: never edits


def test_spam_passes_a_clean_message(spamd: Spamd, tmp_path: Path) -> None:
    result, content = run_spam(spamd, tmp_path, CLEAN, edit=False)
    assert result.verdict is Verdict.OK
    assert content == CLEAN


def test_spam_edit_accepts_and_rewrites_the_content(spamd: Spamd, tmp_path: Path) -> None:
    result, content = run_spam(spamd, tmp_path, SPAM, edit=True)
    assert result.verdict is Verdict.OK
    assert b"X-Spam-Flag: YES" in content and b"X-Spam-Status: Yes" in content
    assert not list((tmp_path / "spool").glob("*.tmp"))


def test_spamd_not_running(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.content_path("emailrelay.1.2.3")
    path.write_bytes(CLEAN)
    f = SpamFilter("127.0.0.1:1", FilterConfig(SERVER, spool, 5, "x", spool.directory),
                   edit=True)
    result = asyncio.run(f.run(FilterJob("emailrelay.1.2.3", path, path)))
    assert result.verdict is Verdict.FAIL and "cannot connect" in result.reason
    assert path.read_bytes() == CLEAN


def test_request_head() -> None:
    assert request_head(12) == b"PROCESS SPAMC/1.4\r\nContent-length: 12\r\n\r\n"


def test_response_reader_in_pieces() -> None:
    body = bytearray()
    r = SpamdResponse(body.extend)
    data = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: False ; 0.1 / 5.0\r\n\r\nhello"
    for i in range(len(data)):
        r.feed(data[i:i + 1])
    assert r.complete and bytes(body) == b"hello" and r.verdict == ""
    r = SpamdResponse()
    r.feed(b"SPAMD/1.1 0 EX_OK\nSpam: True ; 9.0 / 5.0\ncontent-length: 1\n\nx")
    assert r.verdict == "True ; 9.0 / 5.0"


@pytest.mark.parametrize(("data", "error"), [
    (b"HTTP/1.1 200 OK\r\n", "invalid response: HTTP/1.1 200 OK"),
    (b"SPAMD/1.1 76 EX_PROTOCOL\r\n", "invalid response"),
    (b"SPAMD/1.1 0 EX_OK\r\nSpam: True\r\n\r\n", "invalid response headers"),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: lots\r\n", "invalid response headers"),
    (b"SPAMD/1.1 0 EX_OK\r\n" + b"X" * 10000, "too long"),
])
def test_malformed_responses(data: bytes, error: str) -> None:
    with pytest.raises(SpamdError, match=error):
        SpamdResponse().feed(data)


def test_relay_with_spam_filter_rejects_gtube_from_swaks(spamd: Spamd, start_relay) -> None:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    relay = start_relay("--filter", f"spam:127.0.0.1:{spamd.port}")
    swaks = ["swaks", "--server", f"127.0.0.1:{relay.port}", "--from", "a@example.org",
             "--to", "b@example.net"]
    spam = subprocess.run([*swaks, "--body", GTUBE], capture_output=True, text=True,
                          timeout=60)
    assert "<** 452 rejected" in spam.stdout
    clean = subprocess.run([*swaks, "--body", "Lunch at noon?"], capture_output=True,
                           text=True, timeout=60)
    assert "<-  250 message processed" in clean.stdout
    assert len(relay.envelopes()) == 1 and len(relay.envelopes(".bad")) == 1
    bad = relay.envelopes(".bad")[0].read_text()
    assert "X-MailRelay-Reason: spam: True ; " in bad
