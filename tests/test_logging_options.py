"""The logging options at work: --debug adds debug lines, --log-file names its file from
the date and hour (%d, %h) and moves to a new one when they change, and --syslog sends
with the facility it names."""

from __future__ import annotations

import logging
import poplib
import re
import smtplib
import syslog as syslog_h
import time
from pathlib import Path

import pytest

from emailrelay.logs import setup as logsetup
from emailrelay.options.validate import SYSLOG_FACILITIES
from tests.support.relay import Relay, free_port
from tests.support.spooling import spool_message
from tests.test_compat import SyslogCollector, relay_with_syslog


@pytest.mark.parametrize("debug", [True, False], ids=["--debug", "--verbose only"])
def test_debug_adds_debug_lines(tmp_path: Path, debug: bool) -> None:
    """A POP3 DELE with --pop-no-delete is logged at debug level: with --debug the line
    is there (as ``emailrelay: debug: ...``), without it no debug line at all."""
    auth = tmp_path / "pop.auth"
    auth.write_text("server plain alice secret\n")
    spool = tmp_path / "spool"
    spool_message(spool)
    pop_port = free_port()
    relay = Relay(tmp_path, "--pop", "--pop-port", str(pop_port), "--pop-auth", str(auth),
                  "--pop-no-delete", *(["--debug"] if debug else []), spool=spool)
    try:
        client = poplib.POP3("127.0.0.1", pop_port, timeout=10)
        client.user("alice")
        client.pass_("secret")
        client.dele(1)
        client.quit()
        log = relay.wait_for_log("pop connection closed")
    finally:
        relay.stop()
    line = "emailrelay: debug: pop: --pop-no-delete: not deleting 1 message\n"
    if debug:
        assert line in log, log
    else:
        assert "debug:" not in log, log
    assert len(list(spool.glob("*.content"))) == 1  # not deleted either way


def test_log_file_name_has_the_date_and_hour(tmp_path: Path) -> None:
    """``--log-file relay.%d.%h.log``: %d is YYYYMMDD and %h the hour, local time; the
    log goes there and not to standard error."""
    before = time.time()
    relay = Relay(tmp_path, "--log-file", str(tmp_path / "relay.%d.%h.log"))
    try:
        with smtplib.SMTP("127.0.0.1", relay.port) as client:
            client.noop()
    finally:
        relay.stop()
    after = time.time()
    names = {time.strftime("relay.%Y%m%d.%H.log", time.localtime(t))
             for t in (before, after)}  # two if the hour turned during the test
    files = sorted(tmp_path.glob("relay.2*.log"))
    assert files and {f.name for f in files} <= names, (files, names)
    text = "".join(f.read_text() for f in files)
    assert re.search(r"^emailrelay: info: smtp connection from 127\.0\.0\.1:\d+$", text,
                     re.M), text
    assert 'rx<<: "noop"' in text
    assert "smtp connection from" not in relay.log()  # standard error


def test_log_file_moves_on_when_the_hour_changes(tmp_path: Path) -> None:
    """Each line goes to the file its own time names: a new hour (or day) starts a new
    file, and the earlier file keeps its lines."""
    handler = logsetup.DatedFileHandler(str(tmp_path / "log.%d.%h"))
    handler.setFormatter(logsetup.RelayFormatter(logsetup.LogSettings()))
    start = time.mktime((2024, 12, 31, 22, 59, 59, 0, 0, -1))
    times = {"one": start, "two": start + 1, "three": start + 3601}
    try:
        for text, t in times.items():
            record = logging.LogRecord("emailrelay", logging.INFO, __file__, 0, text, (), None)
            record.created = t
            handler.emit(record)
    finally:
        handler.close()
    assert (tmp_path / "log.20241231.22").read_text() == "emailrelay: info: one\n"
    assert (tmp_path / "log.20241231.23").read_text() == "emailrelay: info: two\n"
    assert (tmp_path / "log.20250101.00").read_text() == "emailrelay: info: three\n"


def wait_for_datagram(collector: SyslogCollector, text: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in d for d in collector.datagrams):
        if time.monotonic() > deadline:
            raise TimeoutError(f"syslog never got {text!r}: {collector.datagrams}")
        time.sleep(0.01)


@pytest.mark.parametrize("facility", SYSLOG_FACILITIES)
def test_syslog_facility_names_map_to_the_syslog_h_numbers(
        tmp_path: Path, facility: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every facility --syslog accepts sends with the number <syslog.h> gives it."""
    collector = SyslogCollector(tmp_path / "log.s")
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKETS", (collector.path,))
    try:
        handler = logsetup._syslog_handler(logsetup.LogSettings(syslog_facility=facility))
        assert handler is not None
        handler.emit(logging.LogRecord("emailrelay", logging.WARNING, __file__, 0, "hello",
                                       (), None))
        handler.close()
        wait_for_datagram(collector, b"hello")
    finally:
        collector.close()
    expected = getattr(syslog_h, f"LOG_{facility.upper()}") | syslog_h.LOG_WARNING
    assert collector.datagrams[0].startswith(b"<%d>" % expected), collector.datagrams


@pytest.mark.parametrize("option,facility", [
    ("--syslog", syslog_h.LOG_MAIL),
    ("--syslog=local3", syslog_h.LOG_LOCAL3),
    ("--syslog=daemon", syslog_h.LOG_DAEMON),
], ids=["no value: mail", "local3", "daemon"])
def test_syslog_option_sets_the_facility_of_every_line(tmp_path: Path, option: str,
                                                       facility: int) -> None:
    """The real program: each datagram it sends to syslog carries the facility."""
    collector = SyslogCollector(tmp_path / "log.s")
    try:
        relay = relay_with_syslog(tmp_path, collector.path, option, name="relay")
        try:
            with smtplib.SMTP("127.0.0.1", relay.port) as client:
                client.noop()
            wait_for_datagram(collector, b"smtp connection closed")
        finally:
            relay.stop()
    finally:
        collector.close()
    priorities = [int(re.match(rb"<(\d+)>", d)[1]) for d in collector.datagrams]
    assert any(b"smtp connection from 127.0.0.1" in d for d in collector.datagrams)
    assert priorities and {p & ~7 for p in priorities} == {facility}, priorities
    assert syslog_h.LOG_INFO in {p & 7 for p in priorities}
