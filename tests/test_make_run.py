"""``make run``: the program with the repository's etc/emailrelay-run.conf, as the
Makefile's ``run`` target starts it, stores what it is sent under ./var/spool."""

from __future__ import annotations

import re
import shlex
import smtplib
import subprocess
from pathlib import Path

from emailrelay.options.parser import read_config_file
from emailrelay.spool.envelope import parse
from tests.support.relay import ROOT, emailrelay_command, free_port, wait_for_port


def make_run_arguments() -> list[str]:
    """The arguments of the ``run`` target's command line in the Makefile."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no run target"
    program, *arguments = shlex.split(recipe[1])
    assert program == "$(BIN)/emailrelay", program
    return arguments


def test_make_run_configuration_stores_mail_under_the_working_directory(
        tmp_path: Path) -> None:
    """The configuration file as `make run` gives it, from another working directory and
    on a free port (the command line overrides the file's ``port 10025``): it listens on
    127.0.0.1 and a message sent with smtplib lands in ./var/spool."""
    arguments = make_run_arguments()
    assert arguments == ["etc/emailrelay-run.conf"]
    config = ROOT / arguments[0]
    settings = {option.name: option.value for option in read_config_file(str(config))}
    assert settings["port"] == "10025" and settings["spool-dir"] == "var/spool"
    port = free_port()
    log_path = tmp_path / "run.log"
    # Run as root, the program becomes "daemon" once it listens and then finds var/spool
    # from the working directory: that must be enterable, as a checkout is (pytest's
    # directories are not; its parents need not be, the path being relative).
    workdir = tmp_path / "checkout"
    workdir.mkdir(mode=0o755)
    workdir.chmod(0o755)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*emailrelay_command(), str(config), "--port", str(port)],
                                   cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail("alice@example.com", ["bob@example.net"],
                                      b"Subject: make run\r\n\r\nhello\r\n")
        assert refused == {}
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    spool = workdir / "var" / "spool"
    (envelope,) = spool.glob("emailrelay.*.envelope")
    assert parse(envelope.read_bytes()).to_remote == ["bob@example.net"]
    (content,) = spool.glob("emailrelay.*.content")
    assert content.read_bytes().endswith(b"Subject: make run\r\n\r\nhello\r\n")
    log = log_path.read_text()
    assert f"smtp server on 127.0.0.1:{port}" in log, log
    assert "smtp message stored: " in log, log
    assert process.returncode == 0, log
