"""Drop-in compatibility with E-MailRelay 2.6, pinned with the real program.

Every expected text below is written out as E-MailRelay 2.6 prints it, not imported from
our code, so that a change on our side fails here.  Pinned in other modules and not
repeated: the SMTP reply texts of each state (test_smtp_server), AUTH replies
(test_smtp_auth, test_auth_e2e), the admin commands one by one (test_admin_core,
test_admin_e2e), POP3 replies (test_pop_protocol, test_pop_e2e), bind failures (exit 2)
and --log-time/--log-address lines (test_process), the .bad Reason/ReasonCode lines of
each forwarding outcome (test_forward_e2e, test_forward_faults), key and certificate as
two --server-tls-certificate options (test_tls_server_e2e), our own fail2ban filter on a
--log-file (test_auth_e2e), the TLS log lines (test_tls_server_e2e, test_tls_forward_e2e).
"""

from __future__ import annotations

import contextlib
import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.admin import AdminClient
from tests.support.capture import CaptureServer
from tests.support.helpers import fail2ban_matches, script, skip_without_fail2ban
from tests.support.relay import (
    Relay,
    emailrelay_command,
    free_port,
    run_emailrelay,
    wait_until,
)
from tests.support.spooling import spool_message, spool_state

SECRETS = "server plain alice e+3Dmc2\n"  # password e=mc2
MESSAGE = b"Subject: compat\r\n\r\nhello\r\n"

# E-MailRelay 2.6's example fail2ban filter (etc/emailrelay-fail2ban-filter), its regular
# expressions as they are: the interface a drop-in must keep.
EMAILRELAY_FAIL2BAN = """[Definition]
failregex = emailrelay: warning: <HOST>; failed authentication
            emailrelay: warning: <HOST>; .* AUTH requested but not advertised
            emailrelay: warning: <HOST>; empty MAIL-FROM return path
            emailrelay: info: <HOST>; address verifier: exit code
ignoreregex = emailrelay: warning: <HOST>; dnsbl
              emailrelay: info: <HOST>; address verifier: exit code 1:
"""


def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "emailrelay.auth"
    path.write_text(SECRETS)
    path.chmod(0o600)
    return path



def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# -- process model --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [["--as-server"], ["--as-proxy", "127.0.0.1:9"]])
def test_daemon_is_up_when_the_parent_returns_and_removes_its_pid_file_on_sigterm(
        tmp_path: Path, mode: list[str]) -> None:
    """Relative paths, as an init script gives them: the daemon works in /."""
    smtp, pop, admin = free_port(), free_port(), free_port()
    secrets_file(tmp_path)
    result = run_emailrelay(
        *mode, "--port", str(smtp), "--pop", "--pop-port", str(pop), "--pop-auth",
        "emailrelay.auth", "--admin", str(admin), "--interface", "127.0.0.1", "--user", "root",
        "--spool-dir", "spool", "--pid-file", "run/emailrelay.pid", cwd=tmp_path)
    pid_file = tmp_path / "run" / "emailrelay.pid"
    pid = int(pid_file.read_text())
    try:
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert pid_file.read_text() == f"{pid}\n" and pid != os.getpid()
        # No waiting: every listener is up by the time the parent has returned.
        with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert poplib.POP3("127.0.0.1", pop, timeout=10).getwelcome().startswith(
            b"+OK POP3 server ready")
        AdminClient(admin).close()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_file.exists())
    wait_until(lambda: refused(smtp) and refused(pop) and refused(admin))
    if mode[0] == "--as-server":
        assert len(list((tmp_path / "spool").glob("emailrelay.*.envelope"))) == 1


def test_start_up_errors_go_to_standard_error_even_with_a_log_file(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_emailrelay("--as-server", "--log-file", str(tmp_path / "log"), "--user",
                                "root", "--port", str(port), "--interface", "127.0.0.1",
                                "--spool-dir", str(tmp_path / "spool"))
    line = f"emailrelay: error: cannot bind 127.0.0.1:{port}: Address already in use\n"
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line)
    assert (tmp_path / "log").read_text().endswith(line)
    # A failure after the fork: the daemon's parent still reports it, with exit code 1.
    (tmp_path / "file").write_text("")
    result = run_emailrelay("--as-server", "--user", "root", "--port", str(free_port()),
                            "--interface", "127.0.0.1", "--spool-dir", str(tmp_path / "spool"),
                            "--pid-file", str(tmp_path / "file" / "pid"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("emailrelay: error: cannot write pid file")


def test_the_command_line_pid_file_beats_the_configuration_files(tmp_path: Path) -> None:
    config = tmp_path / "emailrelay.conf"
    config.write_text(f"pid-file {tmp_path / 'config.pid'}\nno-daemon\n"
                      f"spool-dir {tmp_path / 'spool'}\nuser root\ninterface 127.0.0.1\n")
    port = free_port()
    process = subprocess.Popen([*emailrelay_command(), "--pid-file", str(tmp_path / "cmd.pid"),
                                "--port", str(port), str(config)],
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "cmd.pid").exists())
        assert not (tmp_path / "config.pid").exists()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert stderr == "emailrelay: warning: more than one --pid-file: using the first\n"


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


def test_dont_serve_forward_as_a_daemon_ends_when_the_spool_is_sent(
        tmp_path: Path, capture: CaptureServer) -> None:
    spool = tmp_path / "spool"
    for n in range(2):
        spool_message(spool, content=f"Subject: {n}\r\n\r\nhi\r\n".encode())
    result = run_emailrelay("--dont-serve", "--forward", "--forward-to", capture.address,
                            "--spool-dir", "spool", "--pid-file", "relay.pid", "--user",
                            "root", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    capture.wait_for(2)
    wait_until(lambda: not (tmp_path / "relay.pid").exists())
    assert spool_state(spool) == {}


def test_dont_serve_forward_in_the_foreground_returns_when_done(
        tmp_path: Path, capture: CaptureServer) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    result = run_emailrelay("--dont-serve", "--forward", "--forward-to", capture.address,
                            "--no-daemon", "--log", "--spool-dir", str(spool), "--user", "root")
    assert result.returncode == 0 and spool_state(spool) == {}
    assert len(capture.messages) == 1
    # E-MailRelay 2.6 ends without any "finished" line.
    last = result.stderr.splitlines()[-1]
    assert last == "emailrelay: info: forwarding: no more messages to send"


# -- --version and --help --------------------------------------------------------------------

def test_version_and_help_output() -> None:
    brief, verbose = run_emailrelay("--version"), run_emailrelay("--version", "--verbose")
    assert brief.stdout.splitlines()[:2] == ["E-MailRelay V2.6", ""]
    assert "POP server:" not in brief.stdout
    assert re.search(r"^Multi-threading: enabled\nUnix domain sockets: enabled\n"
                     r"POP server: enabled\nAdmin server: enabled\n"
                     r"TLS library: OpenSSL \d+\.\d+\.\d+\S* .+\n\n", verbose.stdout, re.M)
    for args in (["--help"], ["--help", "--verbose"]):
        result = run_emailrelay(*args)
        assert (result.returncode, result.stderr) == (0, "")
        lines = result.stdout.splitlines()
        assert lines[0] == "E-MailRelay V2.6"
        assert [line for line in lines if "usage:" in line] == [
            "usage: emailrelay [<option> [<option> ...]] [<config-file>]"]


# -- protocol texts ------------------------------------------------------------------------

class Dialogue:
    """SMTP by hand: send a line, get the reply lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> list[str]:
        lines = [self.file.readline().decode().rstrip("\r\n")]
        while lines[-1][3:4] == "-":
            lines.append(self.file.readline().decode().rstrip("\r\n"))
        return lines

    def say(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_smtp_reply_texts_for_the_main_outcomes(start_relay, tmp_path: Path) -> None:
    rejecting = script(tmp_path, "filter", 'grep -q REJECT "$1" || exit 0\n'
                       'echo "<<550 5.7.1 go away>>"\nexit 1\n')
    relay = start_relay("--filter", str(rejecting), "--size", "1000", "--domain",
                        "relay.example")
    smtp = Dialogue(relay.port)
    expected = [
        ("HELO client", "250 hello"),
        ("FROB", "500 command unrecognized"),
        ("RCPT TO:<b@example.com>", "503 command out of sequence -- use RSET to resynchronise"),
        ("EHLO", "501 parameter required"),
        ("MAIL FROM:<a@example.com> SIZE=2000",
         "552 message size exceeds fixed maximum message size"),
        ("MAIL FROM:a@example.com",
         "553 mailbox name not allowed: missing angle brackets in mailbox name"),
        ("MAIL FROM:<a@example.com>", "250 sender <a@example.com> OK"),
        ("RCPT TO:<b@example.com>", "250 recipient <b@example.com> OK"),
        ("DATA", "354 start mail input -- end with <CRLF>.<CRLF>"),
        ("Subject: ok\r\n\r\nfine\r\n.", "250 message processed"),
        ("MAIL FROM:<a@example.com>", "250 sender <a@example.com> OK"),
        ("RCPT TO:<b@example.com>", "250 recipient <b@example.com> OK"),
        ("DATA", "354 start mail input -- end with <CRLF>.<CRLF>"),
        ("Subject: REJECT\r\n\r\nno\r\n.", "550 5.7.1 go away"),
        ("NOOP", "250 noop"),
        ("RSET", "250 state reset"),
        ("AUTH PLAIN", "502 command not implemented"),
        ("QUIT", "221 OK"),
    ]
    try:
        assert smtp.greeting == ["220 relay.example -- E-MailRelay V2.6 -- Service ready"]
        ehlo = smtp.say("EHLO client")
        assert ehlo[0] == "250-relay.example says hello" and ehlo[-1] == "250 8BITMIME"
        assert "250-SIZE 1000" in ehlo
        assert [(line, smtp.say(line)) for line, _ in expected] == [
            (line, [reply]) for line, reply in expected]
    finally:
        smtp.close()


def test_admin_prompt_and_replies(start_relay) -> None:
    port = free_port()
    relay = start_relay("--admin", str(port))
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    (envelope,) = relay.envelopes()
    admin = socket.create_connection(("127.0.0.1", port), timeout=10)
    admin.sendall(b"list\r\nforward\r\nfrobnicate\r\n\r\npid\r\nquit\r\n")
    replies = b""
    while chunk := admin.recv(4096):
        replies += chunk
    admin.close()
    message_id = envelope.name.removesuffix(".envelope")
    # No prompt before the first command; the prompt after each reply, none after quit.
    assert replies.decode() == (
        f"{message_id}\r\nE-MailRelay> "
        "error: no remote server configured: use --forward-to\r\nE-MailRelay> "
        "error: unrecognised command\r\nE-MailRelay> "
        "E-MailRelay> "
        f"{relay.process.pid}\r\nE-MailRelay> ")


def test_pop_greeting_and_replies(start_relay, tmp_path: Path) -> None:
    pop_port = free_port()
    relay = start_relay("--pop", "--pop-port", str(pop_port), "--pop-auth",
                        str(secrets_file(tmp_path)), "--interface", "127.0.0.1")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    (content,) = relay.contents()
    pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
    assert re.fullmatch(rb"\+OK POP3 server ready <\d+\.\d+@[^>]+>", pop.getwelcome())
    capabilities = pop.capa()  # E-MailRelay's, and RFC 2449 ones of ours
    assert {"USER", "CAPA", "TOP", "UIDL"} <= capabilities.keys()
    assert capabilities["SASL"] == ["CRAM-SHA512", "CRAM-SHA256", "CRAM-SHA1", "CRAM-MD5",
                                    "PLAIN", "LOGIN"]
    assert pop.user("alice") == b"+OK user: alice"
    assert pop.pass_("e=mc2") == b"+OK"
    size = content.stat().st_size
    assert pop.stat() == (1, size)
    assert pop.list() == (b"+OK 1 message(s)", [f"1 {size}".encode()], len(f"1 {size}") + 2)
    assert pop.uidl(1) == f"+OK 1 {content.name}".encode()
    assert pop.retr(1)[0] == f"+OK {size} octets".encode()
    assert pop.dele(1) == b"+OK"
    assert pop.rset() == b"+OK"
    assert pop.quit() == b"+OK signing off"


# -- log lines --------------------------------------------------------------------------------

class SyslogCollector:
    """A unix-domain datagram socket standing in for /dev/log, read as a syslog daemon
    reads it (continuously: a full socket queue would block the sender)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.datagrams: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.sock.recv(65536):
                self.datagrams.append(data)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def syslog(tmp_path: Path) -> Iterator[SyslogCollector]:
    collector = SyslogCollector(tmp_path / "log.s")
    yield collector
    collector.close()


def relay_with_syslog(tmp_path: Path, socket_path: str, *args: str, name: str) -> Relay:
    """The real program, its syslog pointed at the test's socket instead of /dev/log."""
    boot = ("import sys; from emailrelay.logs import setup; "
            f"setup.SYSLOG_SOCKETS = ({socket_path!r},); "
            "from emailrelay.cli.main import main; sys.exit(main())")
    return Relay(tmp_path, *args, name=name, command=[sys.executable, "-c", boot])


def as_syslog_file(datagrams: list[bytes]) -> str:
    """What a syslog daemon writes for the datagrams: a date, the host, the message."""
    messages = (re.sub(rb"^<\d+>", b"", d).decode() for d in datagrams)
    return "".join(f"Jan  5 10:00:00 relayhost {m}\n" for m in messages)


def test_main_log_lines_match_e_mailrelays_fail2ban_filter(
        tmp_path: Path, syslog: SyslogCollector) -> None:
    skip_without_fail2ban()
    path = syslog.path
    verifier = script(tmp_path, "verifier",
                      'case "$1" in bad*) echo "no such user"; exit 2;; esac\n'
                      'echo ""; echo "$1"; exit 1\n')
    auth = relay_with_syslog(tmp_path, path, "--log-address", "--server-auth",
                             str(secrets_file(tmp_path)), name="auth")
    open_relay = relay_with_syslog(tmp_path, path, "--log-address", "--address-verifier",
                                   str(verifier), name="open")
    try:
        with smtplib.SMTP("127.0.0.1", auth.port, timeout=20) as smtp:
            smtp.ehlo("client")
            smtp.esmtp_features["auth"] = "PLAIN"
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("alice", "wrong")
        smtp = Dialogue(open_relay.port)
        smtp.say("EHLO client")
        assert smtp.say("AUTH PLAIN")[0].startswith("502")
        smtp.say("MAIL FROM:<>")
        assert smtp.say("RCPT TO:<good@example.com>")[0].startswith("250")
        assert smtp.say("RCPT TO:<bad@example.com>")[0].startswith("550")
        smtp.say("QUIT")
        smtp.close()
        auth.wait_for_log("failed authentication")
        open_relay.wait_for_log("exit code 2")
    finally:
        auth.stop()
        open_relay.stop()
    log = tmp_path / "mail.log"
    log.write_text(as_syslog_file(syslog.datagrams))
    assert re.search(r"^Jan  5 10:00:00 relayhost emailrelay\[\d+\]: emailrelay: warning: "
                     r"127\.0\.0\.1; failed authentication", log.read_text(), re.M)
    # E-MailRelay's: the login, AUTH, the empty return path and the refused recipient
    # (not the accepted one, exit code 1).
    assert fail2ban_matches(log, tmp_path, EMAILRELAY_FAIL2BAN) == ["127.0.0.1"] * 4
    # Ours: logins and AUTH only (bounces and unknown recipients are no attack).
    assert fail2ban_matches(log, tmp_path) == ["127.0.0.1"] * 2


def test_a_healthy_start_and_stop_logs_no_error_warning_or_exception(
        start_relay, tmp_path: Path) -> None:
    relay = start_relay("--log-time", "--log-address", "--pop", "--pop-port", str(free_port()),
                        "--pop-auth", str(secrets_file(tmp_path)), "--admin", str(free_port()),
                        "--forward-to", "127.0.0.1:9", "--remote-clients")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert relay.stop() == 0
    lines = relay.log().splitlines()
    assert [line for line in lines
            if re.search(r"error|warning|exception", line, re.I)] == []
    stamp = r"^emailrelay: \d{8}\.\d{6}\.\d{3}: info: "
    for expected in (r"smtp server on 127\.0\.0\.1:\d+$", r"pop server on 127\.0\.0\.1:\d+$",
                     r"admin server on 127\.0\.0\.1:\d+$", r"forwarding to 127\.0\.0\.1:9$",
                     r"127\.0\.0\.1; smtp connection from 127\.0\.0\.1:\d+$",
                     r'127\.0\.0\.1; rx<<: "(?i:mail from):<a@example\.com>.*"$',
                     r'127\.0\.0\.1; tx>>: "250 message processed"$',
                     r"127\.0\.0\.1; smtp connection closed: 127\.0\.0\.1:\d+$"):
        assert [line for line in lines if re.search(stamp + expected, line)], expected


def test_filter_rejections_are_logged_with_the_reason(start_relay, tmp_path: Path) -> None:
    rejecting = script(tmp_path, "filter", 'echo "<<550 go away>>"\necho "<<spam score 9>>"\n'
                       "exit 1\n")
    relay = start_relay("--filter", str(rejecting))
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client, \
            pytest.raises(smtplib.SMTPDataError):
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    log = relay.wait_for_log("rejected by filter")
    assert "emailrelay: info: rejected by filter: [spam score 9]\n" in log
    assert re.search(r"^emailrelay: info: filter \[filter\]: \[emailrelay\.\d+\.\d+\.1\]: "
                     r"failed response=\[go away\] reason=\[spam score 9\]$", log, re.M)


def test_forwarding_log_lines(start_relay, capture: CaptureServer) -> None:
    relay = start_relay("--filter", "exit:103", "--forward-to", capture.address)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    capture.wait_for(1)
    log = relay.wait_for_log("no more messages to send")
    (message_id,) = re.findall(r"filter \[exit:103\]: \[(\S+)\]: ok \+rescan", log)
    lines = [line for line in log.splitlines()
             if line.startswith(("emailrelay: info: forwarding", "emailrelay: info: smtp "
                                 "connection to"))]
    assert lines == [f"emailrelay: info: forwarding to {capture.address}",
                     "emailrelay: info: forwarding: [rescan]",
                     f"emailrelay: info: smtp connection to {capture.address}",
                     f"emailrelay: info: forwarding [{message_id}]",
                     "emailrelay: info: forwarding: no more messages to send"]


# -- spool -----------------------------------------------------------------------------------

def test_sequence_numbers_start_at_one_in_each_process(start_relay) -> None:
    for name in ("first", "second"):
        relay = start_relay(name=name)
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            for _ in range(2):
                client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        names = sorted(p.name for p in relay.envelopes())
        # emailrelay.<pid>.<epoch seconds>.<sequence number>.envelope
        fields = [n.split(".") for n in names]
        assert [(f[1], f[3]) for f in fields] == [(str(relay.process.pid), "1"),
                                                  (str(relay.process.pid), "2")]
        assert all(abs(int(f[2]) - time.time()) < 60 for f in fields)
        relay.stop()


def test_any_envelope_is_forwarded_in_file_name_order(tmp_path: Path,
                                                     capture: CaptureServer) -> None:
    spool = tmp_path / "spool"
    made = [spool_message(spool, content=f"Subject: {n}\r\n\r\nhi\r\n".encode())
            for n in range(3)]
    # Names another tool might write, renamed so that their order is not the creation order.
    names = ["emailrelay.other.b", "emailrelay.9.1700000000.10", "emailrelay.9.1700000000.9"]
    for old, new in zip(made, names, strict=True):
        for suffix in (".content", ".envelope"):
            (spool / (old + suffix)).rename(spool / (new + suffix))
    (spool / "emailrelay.other.c.envelope.bad").write_text("not forwarded")
    result = run_emailrelay("--as-client", capture.address, "--spool-dir", str(spool),
                            "--user", "root", "--forward-connections", "1")
    assert result.returncode == 0, result.stderr
    sent = [m.content.split(b"Subject: ")[1][:1].decode() for m in capture.wait_for(3)]
    order = {made[i]: str(i) for i in range(3)}
    assert sent == [order[made[names.index(n)]] for n in sorted(names)]
    assert re.findall(r"forwarding \[(\S+)\]", result.stderr) == sorted(names)
    assert spool_state(spool) == {"emailrelay.other.c": "bad"}


# -- repeated and prefixed options ----------------------------------------------------------

def test_two_filter_options_form_one_chain(start_relay, tmp_path: Path) -> None:
    marker = tmp_path / "second-ran"
    second = script(tmp_path, "second", f'touch "{marker}"\nexit 0\n')
    relay = start_relay("--filter", "exit:1", "--filter", str(second))
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert (info.value.smtp_code, info.value.smtp_error) == (452, b"rejected")
    assert not marker.exists()  # the chain stopped at the first rejection
    other = start_relay("--filter", "exit:0", "--filter", str(second), name="other")
    with smtplib.SMTP("127.0.0.1", other.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert marker.exists()


def test_numbered_instances_work_like_named_ones(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    log = tmp_path / "relay.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*emailrelay_command(), "--no-daemon", "--log", "--user", "root",
             "--1-spool-dir", str(tmp_path / "one"), "--1-port", str(first),
             "--1-interface", "127.0.0.1", "--2-spool-dir", str(tmp_path / "two"),
             "--2-port", str(second), "--2-interface", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        for port in (first, second):
            wait_until(lambda port=port: not refused(port))
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("a@example.com", [f"{port}@example.com"], MESSAGE)
    finally:
        process.terminate()
        assert process.wait(10) == 0
    for directory, port in (("one", first), ("two", second)):
        (envelope,) = (tmp_path / directory).glob("*.envelope")
        assert f"X-MailRelay-To-Remote: {port}@example.com" in envelope.read_text()
    text = log.read_text()
    assert f"emailrelay: info: [1] smtp server on 127.0.0.1:{first}\n" in text
    assert f"emailrelay: info: [2] smtp server on 127.0.0.1:{second}\n" in text


def test_a_spool_on_a_ram_file_system_is_mentioned_not_warned_about(start_relay) -> None:
    """OpenWrt's /var is tmpfs: the relay says so once, as information."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    with tempfile.TemporaryDirectory(dir=shm) as ram:
        relay = start_relay(spool=Path(ram) / "spool")
        log = relay.wait_for_log("RAM file system")
        relay.stop()
    assert re.search(r"^emailrelay: info: the spool directory \".*\" is on a RAM file system: "
                     r"messages will not survive a reboot$", log, re.M), log
    assert "warning" not in log
