"""``--log-format`` fields in the lines of a real relay: ``time``, ``address`` and
``port`` (in E-MailRelay's shapes) and ``msgid`` (the content's Message-ID in each
forwarding line, as E-MailRelay's client logs it)."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

from tests.support.capture import CaptureServer
from tests.support.spooling import as_client, spool_message

CONTENT = b"Message-ID: <abc.123@example.com>\r\nSubject: x\r\n\r\nhello\r\n"


def test_msgid_adds_the_message_id_to_the_forwarding_line(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with_id = spool_message(spool, content=CONTENT)
    without = spool_message(spool, content=b"Subject: no id\r\n\r\nhello\r\n")
    with CaptureServer() as far:
        result = as_client(far.address, spool, "--log-format=msgid")
        assert result.returncode == 0, result.stderr
        assert len(far.messages) == 2
    assert f"forwarding [{with_id}] message-id=[<abc.123@example.com>]" in result.stderr
    assert f"forwarding [{without}] message-id=[]" in result.stderr


def test_without_msgid_the_forwarding_line_has_no_message_id(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool, content=CONTENT)
    with CaptureServer() as far:
        result = as_client(far.address, spool)
        assert result.returncode == 0, result.stderr
    assert re.search(rf"forwarding \[{re.escape(message_id)}\]\n", result.stderr)


def test_time_address_and_port_fields(start_relay) -> None:
    relay = start_relay("--log-format=time,address,port")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        local_port = client.sock.getsockname()[1]
        client.noop()
    log = relay.wait_for_log("smtp connection closed")
    assert re.search(rf"^emailrelay: \d{{8}}\.\d{{6}}\.\d{{3}}: info: 127\.0\.0\.1;{local_port}: "
                     rf"smtp connection closed", log, re.M), log
