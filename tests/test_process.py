"""Process behaviour: daemon, pid file, exit codes, listening addresses and logging."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest

from tests.support.relay import Relay, emailrelay_command, free_port, run_emailrelay, wait_for_port


def test_bind_failure_exits_with_code_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_emailrelay("--no-daemon", "--log", "--user", "root", "--port", str(port),
                                "--interface", "127.0.0.1", "--spool-dir",
                                str(tmp_path / "spool"))
    assert result.returncode == 2
    assert re.search(r"emailrelay: error: cannot bind 127\.0\.0\.1:\d+: Address already in use",
                     result.stderr)


@pytest.mark.parametrize("option", ["--no-smtp", "--dont-serve"])
def test_nothing_to_do(tmp_path: Path, option: str) -> None:
    # E-MailRelay says so and exits 0: a message, not a failure.
    result = run_emailrelay("--no-daemon", option, "--spool-dir", str(tmp_path))
    assert result.returncode == 0 and result.stderr == "emailrelay: nothing to do\n"


def test_unusable_spool_directory_is_an_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_emailrelay("--no-daemon", "--log", "--port", str(free_port()), "--interface",
                            "127.0.0.1", "--spool-dir", str(not_a_dir))
    assert result.returncode == 1 and "is not a directory" in result.stderr


def test_unix_domain_socket(tmp_path: Path) -> None:
    path = tmp_path / "smtp.s"
    relay = Relay(tmp_path, "--interface", f"smtp={path}", wait=False)
    try:
        relay.wait_for_log(f"smtp server on {path}")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            assert s.recv(200).startswith(b"220 ")
            s.sendall(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
            reply = b""
            while b"221" not in reply:
                reply += s.recv(1000)
        assert b"250 message processed" in reply
        assert len(relay.envelopes()) == 1
    finally:
        relay.stop()


def test_inherited_listening_socket(tmp_path: Path) -> None:
    import subprocess
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    log = tmp_path / "fd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*emailrelay_command(), "--no-daemon", "--log", "--user", "root", "--interface",
             f"smtp=fd#{fd}", "--spool-dir", str(tmp_path / "spool")],
            stdout=out, stderr=subprocess.STDOUT, pass_fds=[fd])
    listener.close()
    try:
        wait_for_port(port)
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.ehlo()[0] == 250
    finally:
        process.terminate()
        process.wait(10)
    assert f"smtp server on fd#{fd}" in log.read_text()


def test_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 on this host")
    relay = Relay(tmp_path, "--interface", "::1", wait=False)
    try:
        relay.wait_for_log("smtp server on ::1.")  # E-MailRelay's form
        with smtplib.SMTP("::1", relay.port) as client:
            client.sendmail("a@x", ["b@x"], b"Subject: v6\r\n\r\nhi\r\n")
        relay.wait_for_log("smtp message stored")
    finally:
        relay.stop()


def test_interface_name_and_prefixes(tmp_path: Path) -> None:
    relay = Relay(tmp_path, "--interface", "pop=127.0.0.2,smtp=lo-ipv4", wait=False)
    try:
        relay.wait_for_log("smtp server on 127.0.0.1:")
        assert "127.0.0.2" not in relay.log()
    finally:
        relay.stop()


def test_bad_interface_is_a_clear_error(tmp_path: Path) -> None:
    result = run_emailrelay("--no-daemon", "--interface", "no-such-nic0", "--spool-dir",
                            str(tmp_path))
    assert result.returncode == 1
    assert "neither an address nor a network interface name" in result.stderr


def test_log_file_time_and_address(tmp_path: Path) -> None:
    relay = Relay(tmp_path, "--log-file", str(tmp_path / "log.%d"), "--log-time",
                  "--log-address")
    try:
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.noop()
    finally:
        relay.stop()
    (log_file,) = tmp_path.glob("log.2*")
    assert re.fullmatch(r"log\.\d{8}", log_file.name)
    text = log_file.read_text()
    assert re.search(r"^emailrelay: \d{8}\.\d{6}\.\d{3}: info: 127\.0\.0\.1; smtp connection "
                     r"from 127\.0\.0\.1:\d+$", text, re.M), text
    assert re.search(r"^emailrelay: \d{8}\.\d{6}\.\d{3}: info: 127\.0\.0\.1; rx<<: \"noop\"$",
                     text, re.M), text


def test_close_stderr_keeps_the_log_file(tmp_path: Path) -> None:
    relay = Relay(tmp_path, "--close-stderr", "--log-file", str(tmp_path / "relay-file.log"))
    try:
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.noop()
    finally:
        relay.stop()
    assert "smtp connection from" in (tmp_path / "relay-file.log").read_text()
    assert relay.log() == ""


def test_sigterm_lets_a_session_finish(tmp_path: Path) -> None:
    relay = Relay(tmp_path)
    client = smtplib.SMTP("127.0.0.1", relay.port)
    client.ehlo()
    client.mail("a@x")
    client.rcpt("b@x")
    relay.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert client.data(b"Subject: late\r\n\r\nstill accepted\r\n")[0] == 250
    client.quit()
    assert relay.process.wait(10) == 0
    assert len(relay.envelopes()) == 1


def test_root_drops_to_the_user_after_binding(tmp_path: Path) -> None:
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import subprocess
    import tempfile
    user = pwd.getpwnam("daemon")
    port = free_port()
    # The unprivileged user must be able to reach the spool: not under pytest's 0700 tmp.
    base = Path(tempfile.mkdtemp(prefix="emailrelay-user-"))
    base.chmod(0o755)
    spool = base / "spool"
    with open(tmp_path / "user.log", "wb") as out:
        process = subprocess.Popen(
            [*emailrelay_command(), "--no-daemon", "--log", "--port", str(port), "--interface",
             "127.0.0.1", "--spool-dir", str(spool)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)  # bound as root: the switch to the user comes just after
        status = Path(f"/proc/{process.pid}/status")
        deadline = time.monotonic() + 10
        while f"\t{user.pw_uid}\t" not in status.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status.read_text().count(f"\t{user.pw_uid}\t") >= 1
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("a@x", ["b@x"], b"Subject: x\r\n\r\nhi\r\n")
    finally:
        process.terminate()
        process.wait(10)
    files = list(spool.iterdir())
    assert len(files) == 2
    assert all(f.stat().st_uid == user.pw_uid for f in files)
    assert spool.stat().st_uid == user.pw_uid
    import shutil
    shutil.rmtree(base)
