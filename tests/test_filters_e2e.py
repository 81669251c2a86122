"""Filters and address verifiers through the real relay, with smtplib and swaks."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import threading
import time
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.helpers import script
from tests.support.relay import wait_until

MESSAGE = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def smtp(relay) -> smtplib.SMTP:  # type: ignore[no-untyped-def]
    return smtplib.SMTP("127.0.0.1", relay.port, timeout=20)


def test_filter_rejection_reaches_the_client_and_keeps_a_bad_envelope(start_relay,
                                                                       tmp_path: Path) -> None:
    f = script(tmp_path, "f.sh", "echo '<<550 5.7.1 go away>>'\necho '<<policy 7>>'\nexit 1\n")
    relay = start_relay("--filter", str(f))
    with smtp(relay) as s, pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert (e.value.smtp_code, e.value.smtp_error) == (550, b"5.7.1 go away")
    bad = relay.envelopes(".bad")
    assert len(bad) == 1 and parse(bad[0].read_bytes()).extra == [
        "X-MailRelay-Reason: policy 7", "X-MailRelay-ReasonCode: 550"]
    assert relay.envelopes() == []
    relay.wait_for_log("rejected by filter: [policy 7]")


def test_filter_deleting_the_message_and_exiting_100(start_relay, tmp_path: Path) -> None:
    f = script(tmp_path, "eat.sh", 'rm -f "$1" "$2"\nexit 100\n')
    relay = start_relay("--filter", str(f))
    with smtp(relay) as s:
        assert s.sendmail("a@example.org", ["b@example.net"], MESSAGE) == {}
    assert list(relay.spool.iterdir()) == []


def test_a_slow_filter_does_not_hold_up_other_sessions(start_relay, tmp_path: Path) -> None:
    f = script(tmp_path, "f.sh", 'if grep -q SLOW "$1"; then sleep 30; fi\nexit 0\n')
    relay = start_relay("--filter", str(f), "--filter-timeout", "3")
    outcome: list[object] = []

    def slow() -> None:
        with smtp(relay) as s:
            try:
                s.sendmail("a@example.org", ["b@example.net"], MESSAGE + "SLOW\r\n")
            except smtplib.SMTPDataError as e:
                outcome.append(e.smtp_code)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    with smtp(relay) as s:
        s.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        assert s.noop()[0] == 250
    assert time.monotonic() - started < 2
    thread.join(20)
    assert outcome == [452]  # the slow one timed out: "452 error"
    assert len(relay.envelopes()) == 1 and len(relay.envelopes(".bad")) == 1
    relay.wait_for_log("timed out after 3s")


def test_filter_exit_103_is_a_rescan_request_and_accepts(start_relay, tmp_path: Path) -> None:
    relay = start_relay("--filter", "exit:103")
    with smtp(relay) as s:
        assert s.sendmail("a@example.org", ["b@example.net"], MESSAGE) == {}
    assert len(relay.envelopes()) == 1
    relay.wait_for_log("ok +rescan response=[]")


VERIFIER = """
case "$1" in
  bob@*) echo "Bob Smith"; echo bob; exit 0;;
  alias@*) echo x; echo real@example.net; exit 1;;
  busy@*) echo "mailbox busy"; exit 3;;
  gone@*) echo "no such user"; echo "left in 2019"; exit 2;;
  evil@*) exit 100;;
  *) echo x; echo "$1"; exit 1;;
esac
"""


def rcpt_answers(relay) -> None:  # type: ignore[no-untyped-def]
    """MAIL and the five recipients both verifier tests try, with their replies."""
    with smtp(relay) as s:
        s.ehlo("client.example")
        s.mail("a@example.org")
        assert s.rcpt("bob@example.com") == (250, b"recipient <bob@example.com>  OK")
        assert s.rcpt("alias@example.com") == (250, b"recipient <alias@example.com> OK")
        assert s.rcpt("busy@example.com") == (450, b"mailbox busy")
        assert s.rcpt("gone@example.com") == (550, b"no such user")
        assert s.rcpt("carol@example.net") == (250, b"recipient <carol@example.net> OK")
        assert s.data(MESSAGE)[0] == 250


def test_address_verifier_local_remote_and_rejections(start_relay, tmp_path: Path) -> None:
    relay = start_relay("--address-verifier", str(script(tmp_path, "v.sh", VERIFIER)))
    rcpt_answers(relay)
    with smtp(relay) as s:
        assert s.verify("bob@example.com") == (250, b"Bob Smith")
        assert s.verify("alias@example.com") == (252, b"cannot verify but will accept: "
                                                      b"real@example.net")
        assert s.verify("gone@example.com") == (550, b"no such user")
    envelope = parse(relay.envelopes()[0].read_bytes())
    assert envelope.to_local == ["bob"]
    assert envelope.to_remote == ["real@example.net", "carol@example.net"]
    log = relay.wait_for_log('rejecting recipient "gone@example.com": no such user: left in 2019')
    assert "address verifier: exit code 0: [Bob Smith] [bob]" in log


def test_verifier_exit_100_drops_the_connection(start_relay, tmp_path: Path) -> None:
    relay = start_relay("--address-verifier", str(script(tmp_path, "v.sh", VERIFIER)))
    s = smtp(relay)
    s.ehlo("client.example")
    s.mail("a@example.org")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.rcpt("evil@example.com")
    relay.wait_for_log("smtp connection closed: address verifier abort")




def test_a_slow_address_verifier_does_not_hold_up_other_sessions(start_relay,
                                                                  tmp_path: Path) -> None:
    """While the verifier takes 4s over one session's recipient, another session's
    EHLO, MAIL, RCPT (verified quickly) and NOOP are all answered in well under a second;
    the slow recipient is then accepted."""
    started = tmp_path / "slow-started"
    v = script(tmp_path, "v.sh", f"""
case "$1" in
  slow@*) touch {started}; sleep 4;;
esac
echo x; echo "$1"; exit 1
""")
    relay = start_relay("--address-verifier", str(v))
    outcome: list[tuple[int, bytes]] = []

    def slow() -> None:
        with smtp(relay) as s:
            s.ehlo("slow.example")
            s.mail("a@example.org")
            outcome.append(s.rcpt("slow@example.com"))

    thread = threading.Thread(target=slow)
    thread.start()
    wait_until(started.exists)
    begin = time.monotonic()
    with smtp(relay) as s:
        assert s.ehlo("fast.example")[0] == 250
        assert s.mail("a@example.org")[0] == 250
        assert s.rcpt("quick@example.com") == (250, b"recipient <quick@example.com> OK")
        assert s.noop()[0] == 250
        assert time.monotonic() - begin < 0.5
    assert outcome == []  # the slow verification is still going on
    thread.join(20)
    assert outcome == [(250, b"recipient <slow@example.com> OK")]


NET_ANSWERS = {
    "bob": "0|bob|Bob Smith",
    "alias": "1|real@example.net",
    "busy": "3|mailbox busy|try later",
    "gone": "2|no such user|left in 2019",
}


def test_net_address_verifier_through_the_relay(start_relay) -> None:
    """``--address-verifier net:<host:port>``: a local answer becomes a To-Local line, a
    remote one a To-Remote line (with the address the service gave), and rejections for
    now and for good are 450 and 550."""
    from tests.support.lineserver import LineServer

    def answer(line: str) -> str:
        user = line.split("@", 1)[0]
        return NET_ANSWERS.get(user, "1|" + line.split("|", 1)[0])

    server = LineServer(answer)
    try:
        relay = start_relay("--address-verifier", f"net:{server.address}")
        rcpt_answers(relay)
    finally:
        server.close()
    assert [r.split("|")[:2] for r in server.requests] == [
        [rcpt, "a@example.org"] for rcpt in ("bob@example.com", "alias@example.com",
                                             "busy@example.com", "gone@example.com",
                                             "carol@example.net")]
    text = relay.envelopes()[0].read_bytes()
    assert b"X-MailRelay-ToCount: 3\r\nX-MailRelay-To-Local: bob\r\n" in text
    assert (b"X-MailRelay-To-Remote: real@example.net\r\n"
            b"X-MailRelay-To-Remote: carol@example.net\r\n") in text
    assert b"busy@example.com" not in text and b"gone@example.com" not in text
    relay.wait_for_log('rejecting recipient "gone@example.com": no such user: left in 2019')

def test_anonymous_disables_vrfy(start_relay, tmp_path: Path) -> None:
    relay = start_relay("--anonymous", "--address-verifier",
                        str(script(tmp_path, "v.sh", VERIFIER)))
    with smtp(relay) as s:
        s.ehlo("client.example")
        assert "vrfy" not in s.esmtp_features
        assert s.verify("bob@example.com") == (252, b"cannot vrfy")


def test_account_verifier_and_deliver_filter(start_relay, tmp_path: Path) -> None:
    """Local mail for a system account is delivered into its mailbox and leaves the spool."""
    mail = tmp_path / "mail"
    mail.mkdir()
    relay = start_relay("--domain", "example.com", "--address-verifier", "account:65534-65534",
                        "--filter", "deliver:", "--delivery-dir", str(mail))
    with smtp(relay) as s:
        s.ehlo("client.example")
        s.mail("a@example.org")
        assert s.rcpt("nobody@example.com") == (250, b"recipient <nobody@example.com>  OK")
        assert s.rcpt("root@example.com")[0] == 550
        assert s.data(MESSAGE)[0] == 250
    delivered = sorted(p.name for p in (mail / "nobody").iterdir())
    assert [n.rsplit(".", 1)[1] for n in delivered] == ["content", "envelope"]
    assert list(relay.spool.iterdir()) == []


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_through_a_chain_with_msgid(start_relay, tmp_path: Path) -> None:
    relay = start_relay("--filter", "msgid:", "--filter", "exit:0")
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--from", "a@example.org",
         "--to", "b@example.net", "--data", "Subject: no id\n\nhi\n"],
        capture_output=True, text=True, timeout=30)
    assert "250 message processed" in result.stdout
    content = relay.contents()[0].read_bytes()
    assert content.startswith(b"Message-ID: <") and content.count(b"Message-ID:") == 1
    assert b"\r\nSubject: no id\r\n\r\nhi\r\n" in content


def test_net_filter_service(start_relay) -> None:
    from tests.support.lineserver import LineServer
    server = LineServer(lambda line: "ok" if b"fine" in Path(line).read_bytes()
                        else "554 not fine\tcontent check")
    try:
        relay = start_relay("--filter", f"net:{server.address}")
        with smtp(relay) as s:
            assert s.sendmail("a@example.org", ["b@example.net"], MESSAGE + "fine\r\n") == {}
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail("a@example.org", ["b@example.net"], MESSAGE)
            assert (e.value.smtp_code, e.value.smtp_error) == (554, b"not fine")
    finally:
        server.close()
    assert server.connections == 1
    assert "X-MailRelay-Reason: content check" in relay.envelopes(".bad")[0].read_text()


def test_delivered_mail_is_fetched_with_pop3(start_relay, tmp_path: Path) -> None:
    import poplib

    from tests.support.relay import free_port
    secrets = tmp_path / "pop.auth"
    secrets.write_text("server plain nobody secret\n")
    pop_port = free_port()
    relay = start_relay("--domain", "example.com", "--address-verifier", "account:65534-65534",
                        "--filter", "deliver:", "--pop", "--pop-port", str(pop_port),
                        "--pop-auth", str(secrets), "--pop-by-name")
    with smtp(relay) as s:
        s.sendmail("a@example.org", ["nobody@example.com"], MESSAGE)
    pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
    pop.user("nobody")
    pop.pass_("secret")
    assert pop.stat()[0] == 1
    assert b"hello" in b"\r\n".join(pop.retr(1)[1])
    pop.quit()
