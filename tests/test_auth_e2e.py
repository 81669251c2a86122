"""SMTP AUTH on the real relay with real clients (smtplib, swaks), trusted networks,
failure logging that fail2ban's own tool matches, start-up checks and SIGHUP."""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import signal
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from emailrelay.auth import hashstate
from emailrelay.spool.envelope import parse
from tests.support.helpers import FAIL2BAN_COMMON, OUR_FAIL2BAN_FILTER, fail2ban_matches, script
from tests.support.relay import Relay, run_emailrelay

MD5 = base64.b64encode(hashstate.make_secret(b"my password")).decode()
SECRETS = f"""# relay accounts
server plain alice e+3Dmc2
server md5 carol {MD5}
server none 192.0.2.0/24 faraway
"""
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def secrets_file(tmp_path: Path, text: str = SECRETS) -> Path:
    path = tmp_path / "emailrelay.auth"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def relay(start_relay, tmp_path: Path) -> Relay:
    return start_relay("--server-auth", str(secrets_file(tmp_path)), "--log-address",
                       "--log-time")


def envelope(relay: Relay, index: int = -1):
    return parse(relay.envelopes()[index].read_bytes())


def client(relay: Relay) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", relay.port, timeout=20)
    smtp.ehlo("client.example")
    return smtp


@pytest.mark.parametrize(("mechanism", "user", "password"), [
    ("CRAM-MD5", "alice", "e=mc2"), ("PLAIN", "alice", "e=mc2"), ("LOGIN", "alice", "e=mc2"),
    ("CRAM-MD5", "carol", "my password"), ("PLAIN", "carol", "my password"),
])
def test_smtplib_login_with_each_mechanism(relay: Relay, mechanism: str, user: str,
                                           password: str) -> None:
    with client(relay) as smtp:
        offered = smtp.esmtp_features["auth"].split()
        assert offered == ["CRAM-SHA512", "CRAM-SHA256", "CRAM-SHA1", "CRAM-MD5", "PLAIN",
                           "LOGIN"]
        smtp.esmtp_features["auth"] = mechanism  # login() must use this one
        code, _ = smtp.login(user, password)
        assert code == 235
        smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE, mail_options=["AUTH=<>"])
    env = envelope(relay)
    assert env.authentication == user
    assert env.mail_from_auth_in == "<>" and env.mail_from_auth_out == ""
    log = relay.wait_for_log("successful authentication")
    assert (f"successful authentication of remote client using mechanism "
            f"[{mechanism.lower()}] and user [{user}]") in log
    assert "ESMTPA" in relay.contents()[-1].read_text()  # RFC 3848 in the Received line


@pytest.mark.parametrize("name", ["CRAM-SHA1", "CRAM-SHA256", "CRAM-SHA512"])
def test_smtplib_with_the_sha_cram_mechanisms(relay: Relay, name: str) -> None:
    def answer(challenge: bytes | None = None) -> str:
        assert challenge is not None
        digest = hmac.new(b"e=mc2", challenge, name[5:].lower()).hexdigest()
        return f"alice {digest}"

    with client(relay) as smtp:
        assert smtp.auth(name, answer, initial_response_ok=False)[0] == 235
        smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    assert envelope(relay).authentication == "alice"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks(relay: Relay, mechanism: str) -> None:
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--from", "a@example.com", "--to",
         "b@example.net", "--auth", mechanism, "--auth-user", "alice", "--auth-password",
         "e=mc2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "235 authentication successful" in done.stdout
    assert envelope(relay).authentication == "alice"


def test_mail_before_login_and_wrong_passwords_with_fail2ban(relay: Relay,
                                                             tmp_path: Path) -> None:
    with client(relay) as smtp:
        code, text = smtp.mail("a@example.com")
        assert (code, text) == (530, b"authentication required")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("alice", "wrong")  # tries CRAM-MD5, PLAIN, LOGIN; the 3rd closes
    with client(relay) as smtp:
        smtp.esmtp_features["auth"] = "PLAIN"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("mallory", "guess")
        assert smtp.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0e=mc2").decode())[
            0] == 235
    log = relay.wait_for_log("[mallory]")
    assert "failed authentication of remote client using mechanism [plain] and user " \
           "[mallory]: no such account" in log
    assert "server authentication enabled but not a trusted address: 127.0.0.1" in log
    assert not relay.envelopes()
    # 3 + 1 failed logins, nothing else
    assert fail2ban_matches(relay.log_path, tmp_path) == ["127.0.0.1"] * 4


def test_auth_not_advertised_is_logged_for_fail2ban(start_relay) -> None:
    relay = start_relay("--log-address")
    with client(relay) as smtp:
        assert smtp.docmd("AUTH", "PLAIN")[0] == 502
    assert "warning: 127.0.0.1; client protocol error: AUTH requested but not advertised" in (
        relay.wait_for_log("not advertised"))


def test_failed_logins_are_delayed_without_holding_up_others(relay: Relay) -> None:
    with client(relay) as slow, client(relay) as quick:
        slow.putcmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0nope").decode())
        started = time.monotonic()
        assert quick.login("alice", "e=mc2")[0] == 235
        assert time.monotonic() - started < 1.9  # (a blocked event loop would take 2s)
        assert slow.getreply()[0] == 535
        assert time.monotonic() - started >= 1.8


@pytest.mark.parametrize(("host", "rule", "keyword"), [
    ("127.0.0.1", "127.0.0.0/8", "localipv4"), ("127.0.0.1", "127.0.0.*", "star"),
    ("::1", "::1/128", "localipv6")])
def test_trusted_addresses_need_no_login_and_the_keyword_reaches_the_verifier(
        start_relay, tmp_path: Path, host: str, rule: str, keyword: str) -> None:
    args = tmp_path / "verifier-args"
    verifier = script(tmp_path, "verifier", f'echo "$5|$6" >> {args}\necho ""\necho "$1"\n'
                      "exit 1\n")
    path = secrets_file(tmp_path, SECRETS + f"server none {rule} {keyword}\n")
    relay = start_relay("--server-auth", str(path), "--address-verifier", str(verifier),
                        "--interface", "127.0.0.1,::1")
    with smtplib.SMTP(host, relay.port, timeout=20) as smtp:
        smtp.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    env = envelope(relay)
    assert env.authentication == keyword and env.client == host
    assert args.read_text() == f"none|{keyword}\n"
    assert f"trusting [{host}]: matched [{rule}]" in relay.log()


def test_a_bad_secrets_line_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "server plain alice x\nserver plain bob\n")
    done = run_emailrelay("--no-daemon", "--log", "--spool-dir", str(tmp_path),
                          "--server-auth", str(path), "--port", "0")
    assert done.returncode == 1
    assert f"invalid secrets file \"{path}\": line 2: too few fields" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--server-auth", "pam:"), "--server-auth=pam: is not supported"),
    (("--server-auth-config", "m:plain"),
     "the --server-auth-config option requires --server-auth"),
    (("--client-auth-config", "plain"), "the --client-auth-config option requires --client-auth"),
    (("--server-auth", "x", "--server-auth-config", "q:plain"),
     "invalid --server-auth-config value: invalid item \"Q:PLAIN\""),
    (("--client-auth", "plain:Ym9i", "--forward-to", "127.0.0.1:9"),
     "invalid --client-auth value: use plain:<base64-user-name>:<base64-password>"),
    (("--server-auth", "x", "--no-smtp", "--pop", "--pop-auth", "x"),
     "the --server-auth option cannot be used with --no-smtp"),
])
def test_option_checks(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_emailrelay("--no-daemon", "--log", "--spool-dir", str(tmp_path), "--port", "0",
                          *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_sighup_reads_the_secrets_again(relay: Relay, tmp_path: Path) -> None:
    path = tmp_path / "emailrelay.auth"
    before = path.stat()
    path.write_text(SECRETS + "server plain dora pw\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # no change seen by mtime
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log(f"reloaded the secrets file \"{path}\"")
    with client(relay) as smtp:
        assert smtp.login("dora", "pw")[0] == 235
    path.write_text("server plain broken\n")
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log("cannot reload the secrets file")
    with client(relay) as smtp:
        assert smtp.login("dora", "pw")[0] == 235  # the previous contents stay


@pytest.mark.skipif(shutil.which("fail2ban-client") is None or not FAIL2BAN_COMMON.exists(),
                    reason="fail2ban is not installed")
def test_the_jail_and_filter_pass_fail2bans_configuration_test(tmp_path: Path) -> None:
    config = tmp_path / "fail2ban"
    shutil.copytree(FAIL2BAN_COMMON.parent.parent, config)
    for leftover in (config / "jail.d").iterdir():
        leftover.unlink()  # only our jail
    shutil.copy(OUR_FAIL2BAN_FILTER, config / "filter.d")
    shutil.copy(OUR_FAIL2BAN_FILTER.with_name("emailrelay-jail.conf"),
                config / "jail.d" / "emailrelay.conf")
    log = tmp_path / "mail.log"
    log.write_text("")
    (config / "jail.d" / "zz-test.local").write_text(f"[emailrelay]\nlogpath = {log}\n"
                                                      "backend = polling\n")
    done = subprocess.run(["fail2ban-client", "-c", str(config), "--test"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "OK: configuration test is successful" in (
        done.stdout + done.stderr), done.stdout + done.stderr
