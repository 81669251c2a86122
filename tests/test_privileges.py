"""Privileges and files: started as root with --user, the relay binds its (privileged)
port as root and then runs everything as that user, threads and filters included; spool
files are private; filters run without a shell and with a minimal environment."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.relay import emailrelay_command, wait_for_port

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
