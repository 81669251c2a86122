"""Privileges and files: started as root with --user, the relay binds its (privileged)
port as root and then runs everything as that user, threads and filters included; spool
files are private; filters run without a shell and with a minimal environment; key and
secrets files readable by root only are read before the switch (and a reload that the
user cannot do is announced at start-up); secrets files others can read are reported;
emailrelay-passwd's output logs in."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import Pki
from tests.support.relay import Relay, emailrelay_command, free_port, wait_for_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

USER = "daemon"
FILTER = """#!/bin/sh
# Reports who runs it, with what environment, under which parent; then passes the message.
{{ echo "uid $(id -u) gid $(id -g) groups $(id -G)"; env | sort
   echo "parent $(ps -o args= -p $PPID)"; }} > {report}
exit 0
"""


def privileged_port() -> int:
    for port in range(600, 1024):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def ids(status: str, key: str) -> list[int]:
    return [int(v) for v in re.search(rf"^{key}:\s+(.*)$", status, re.M)[1].split()]


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="emailrelay-priv-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_root_binds_then_everything_runs_as_the_user(base: Path) -> None:
    user = pwd.getpwnam(USER)
    port = privileged_port()
    spool, reports = base / "spool", base / "reports"
    reports.mkdir(mode=0o777)
    reports.chmod(0o777)
    report = reports / "filter.txt"
    filter_script = base / "filter.sh"
    filter_script.write_text(FILTER.format(report=report))
    filter_script.chmod(0o755)
    env = {**os.environ, "CANARY_SECRET": "must-not-reach-a-filter"}
    with open(base / "relay.log", "wb") as log:
        process = subprocess.Popen(
            [*emailrelay_command(), "--no-daemon", "--log", "--user", USER, "--port", str(port),
             "--interface", "127.0.0.1", "--spool-dir", str(spool), "--filter",
             str(filter_script)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port)
        # Every thread of the process: real, effective, saved and file-system ids.
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            status = (task / "status").read_text()
            assert ids(status, "Uid") == [user.pw_uid] * 4, status
            assert ids(status, "Gid") == [user.pw_gid] * 4, status
            assert re.search(r"^Groups:\s*$", status, re.M), status
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    finally:
        process.terminate()
        process.wait(10)
    lines = report.read_text().splitlines()
    # The filter ran as the user, not as root ...
    assert lines[0] == f"uid {user.pw_uid} gid {user.pw_gid} groups {user.pw_gid}"
    # ... with a minimal environment: nothing of the relay's own leaks through ...
    names = {line.split("=", 1)[0] for line in lines[1:-1] if "=" in line}  # IFS spans lines
    assert "CANARY_SECRET" not in names and "HOME" not in names
    assert names <= {"PATH", "IFS", "PWD", "OLDPWD", "SHLVL", "_"}, names
    assert "PATH=/usr/bin:/bin" in lines
    # ... started by the relay itself, not through a shell.
    parent = lines[-1].removeprefix("parent ")
    assert "emailrelay" in parent and "--filter" in parent, parent
    assert not parent.startswith(("sh ", "/bin/sh ", "bash ")), parent
    # Spool files belong to the user and nobody else may read them.
    files = list(spool.iterdir())
    assert len(files) == 2
    for path in [spool, *files]:
        info = path.stat()
        assert info.st_uid == user.pw_uid, path
        assert stat.S_IMODE(info.st_mode) & 0o077 == 0, (path, oct(info.st_mode))


def relay_as(user: str, base: Path, *args: str) -> Relay:
    """The relay started as root, switching to ``user``."""
    return Relay(base, *args, user=user, spool=base / "spool")


def test_root_only_key_and_secrets_are_read_before_the_switch(base: Path) -> None:
    pki = Pki(base)
    key = pki.pem()  # root's, mode 0600
    secrets = base / "emailrelay.auth"
    secrets.write_text("server plain alice secret\n")
    secrets.chmod(0o600)
    relay = relay_as(USER, base, "--server-tls", "--server-tls-certificate", str(key),
                     "--server-auth", str(secrets))
    try:
        for path, what in ((key, "server tls certificate"),
                           (secrets, f"secrets file \"{secrets}\"")):
            assert (f"warning: user \"{USER}\" cannot read \"{path}\" (for the {what}): SIGHUP "
                    "cannot reload it; what was read at start-up stays in use") in relay.log()

        def send(subject: str) -> None:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
                client.starttls(context=pki.client_context())
                client.login("alice", "secret")
                client.sendmail("a@example.com", ["b@example.com"],
                                f"Subject: {subject}\r\n\r\nx\r\n")

        send("read as root")
        relay.process.send_signal(signal.SIGHUP)
        log = relay.wait_for_log(f"cannot reload the secrets file \"{secrets}\"")
        assert (f"cannot reload the server tls certificate: cannot read the tls key file "
                f"\"{key}\": Permission denied: still using the previous one") in log
        send("after the failed reload")  # the copies read as root still work
        assert len(relay.envelopes()) == 2
    finally:
        relay.stop()


def test_files_shared_with_the_users_group_reload_quietly(base: Path) -> None:
    pki = Pki(base)
    key = pki.pem()
    group = pwd.getpwnam(USER).pw_gid
    os.chown(key, 0, group)
    key.chmod(0o640)  # the ssl-cert group convention
    relay = relay_as(USER, base, "--server-tls", "--server-tls-certificate", str(key))
    try:
        assert "cannot read" not in relay.log()
        relay.process.send_signal(signal.SIGHUP)
        relay.wait_for_log("reloaded the server tls certificate")
        assert "cannot reload" not in relay.log()
    finally:
        relay.stop()


@pytest.mark.parametrize("option", ["--server-auth", "--client-auth", "--pop-auth"])
def test_secrets_files_others_can_read_are_reported_at_start_up(base: Path,
                                                                option: str) -> None:
    secrets = base / "emailrelay.auth"
    secrets.write_text("server plain alice secret\nclient plain bob secret\n")
    secrets.chmod(0o644)
    extra = {"--client-auth": ["--forward-to", f"127.0.0.1:{free_port()}"],
             "--pop-auth": ["--pop", "--pop-port", str(free_port())]}.get(option, [])
    relay = relay_as(USER, base, option, str(secrets), *extra)
    try:
        assert (f"warning: secrets file \"{secrets}\" is readable by other users: use chmod "
                f"600 \"{secrets}\"") in relay.log()
    finally:
        relay.stop()
    secrets.chmod(0o600)
    relay = relay_as(USER, base, option, str(secrets), *extra)
    relay.stop()
    assert "readable by other users" not in relay.log().split("emailrelay: info: smtp server")[-1]


def test_emailrelay_passwd_output_logs_in_and_never_shows_the_password(base: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "emailrelay.cli.passwd"],
                          input=b"correct horse\n", capture_output=True, timeout=20)
    assert done.returncode == 0 and done.stderr == b""
    hashed = done.stdout.decode().strip()
    assert "correct" not in hashed and "horse" not in hashed
    secrets = base / "emailrelay.auth"
    secrets.write_text(f"server md5 carol {hashed}\n")
    secrets.chmod(0o600)
    relay = relay_as(USER, base, "--server-auth", str(secrets))
    try:
        for mechanism in ("CRAM-MD5", "PLAIN", "LOGIN"):
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
                client.ehlo("x")
                client.esmtp_features["auth"] = mechanism
                assert client.login("carol", "correct horse")[0] == 235
        log = relay.log()
        assert "correct horse" not in log and hashed not in log
    finally:
        relay.stop()
