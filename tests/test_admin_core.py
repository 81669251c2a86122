"""The admin command core without sockets: E-MailRelay 2.6's commands and texts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from emailrelay.admin.core import ERROR_LIMIT, PROMPT, AdminSession

P = PROMPT.encode()


@dataclass
class FakeForwarding:
    requests: list[str] = field(default_factory=list)

    def request_forward(self, reason: str) -> None:
        self.requests.append(reason)

    async def flush(self) -> str:
        return ""


@dataclass
class FakeBackend:
    forwarding: FakeForwarding | None = None
    pid: int = 4321
    ready: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=lambda: ["IN started: 1", "IN finished: 0"])
    smtp: list[bool] = field(default_factory=list)
    dnsbl: list[int | None] = field(default_factory=list)
    unfailed: int = 0

    def ready_ids(self) -> list[str]:
        return self.ready

    def failed_ids(self) -> list[str]:
        return self.failed

    def unfail_all(self) -> None:
        self.unfailed += 1

    def status_lines(self) -> list[str]:
        return self.status

    def info(self) -> dict[str, str]:
        return {"version": "2.6", "warranty": "none\nat all", "credit": "x",
                "copyright": "c"}

    def set_smtp_enabled(self, enabled: bool) -> None:
        self.smtp.append(enabled)

    def suspend_dnsbl(self, seconds: int | None) -> None:
        self.dnsbl.append(seconds)

    def terminate(self) -> None:
        raise AssertionError("the adapter calls terminate, not the core")


def talk(session: AdminSession, line: str, eol: str = "\n") -> bytes:
    return session.receive_data((line + eol).encode()).data


def test_help_lists_commands_with_and_without_terminate() -> None:
    plain = AdminSession(FakeBackend())
    assert talk(plain, "help") == (b"commands: dnsbl, failures, flush, forward, help, info, "
                                   b"list, notify, pid, quit, smtp, status, unfail-all\n" + P)
    with_terminate = AdminSession(FakeBackend(), terminate_allowed=True)
    assert b"status, terminate, unfail-all\n" in talk(with_terminate, "HELP")


def test_replies_use_the_clients_line_ending() -> None:
    crlf = AdminSession(FakeBackend())
    assert talk(crlf, "pid", "\r\n") == b"4321\r\n" + P
    assert talk(crlf, "status", "\r\n") == b"IN started: 1\r\nIN finished: 0\r\n" + P
    lf = AdminSession(FakeBackend())
    assert talk(lf, "status") == b"IN started: 1\nIN finished: 0\n" + P


def test_list_and_failures() -> None:
    backend = FakeBackend(ready=["emailrelay.1.2.3", "emailrelay.1.2.4"])
    session = AdminSession(backend)
    assert talk(session, "list") == b"emailrelay.1.2.3\nemailrelay.1.2.4\n" + P
    assert talk(session, "failures") == b"<none>\n" + P
    backend.failed = ["emailrelay.9.9.9"]
    assert talk(session, "failures") == b"emailrelay.9.9.9\n" + P
    assert talk(session, "unfail-all") == P and backend.unfailed == 1
    assert talk(AdminSession(FakeBackend(status=[])), "status") == b"no info\n" + P


def test_blank_lines_get_a_prompt_and_unknown_commands_an_error() -> None:
    session = AdminSession(FakeBackend())
    assert talk(session, "   ") == P
    assert talk(session, "frobnicate") == b"error: unrecognised command\n" + P
    # "terminate" is unknown without --admin-terminate
    assert talk(session, "terminate") == b"error: unrecognised command\n" + P


def test_too_many_errors_closes_the_connection() -> None:
    session = AdminSession(FakeBackend())
    for _ in range(ERROR_LIMIT - 1):
        assert session.receive_data(b"bad\n").close is None
    out = session.receive_data(b"bad\n")
    assert out.close == "too many errors" and out.data.startswith(b"error: unrecognised")


def test_forward_and_flush_without_forwarding() -> None:
    session = AdminSession(FakeBackend(ready=["emailrelay.1.2.3"]))
    text = b"error: no remote server configured: use --forward-to\n" + P
    assert talk(session, "forward") == text
    assert talk(session, "flush") == text


def test_forward_requests_a_run() -> None:
    forwarding = FakeForwarding()
    session = AdminSession(FakeBackend(forwarding=forwarding))
    assert talk(session, "forward") == b"OK\n" + P
    assert forwarding.requests == ["admin"]


def test_flush_waits_for_the_result() -> None:
    backend = FakeBackend(forwarding=FakeForwarding())
    session = AdminSession(backend)
    assert talk(session, "flush") == b"error: no messages to send\n" + P
    backend.ready = ["emailrelay.1.2.3"]
    out = session.receive_data(b"flush\n")
    assert out.flush and out.data == b""  # nothing until the flush is done
    assert talk(session, "flush") == b"error: still working\n" + P
    assert talk(session, "pid") == b"4321\n" + P  # still usable meanwhile
    assert session.flush_done("") == b"OK\n" + P
    assert session.receive_data(b"flush\n").flush
    assert session.flush_done("connection refused") == b"error: connection refused\n" + P


def test_smtp_enable_and_disable() -> None:
    backend = FakeBackend()
    session = AdminSession(backend)
    assert talk(session, "smtp disable") == b"OK\n" + P
    assert talk(session, "SMTP Enable") == b"OK\n" + P
    assert talk(session, "smtp") == b"usage: smtp {disable|enable}\n" + P
    assert talk(session, "smtp off") == b"usage: smtp {disable|enable}\n" + P
    assert backend.smtp == [False, True]


@pytest.mark.parametrize(("line", "suspend"), [
    ("dnsbl start", 0), ("dnsbl stop", None), ("dnsbl stop 300", 300),
    ("DNSBL STOP 0", 0), ("dnsbl stop 4294967295", 4294967295)])
def test_dnsbl_start_and_stop(line: str, suspend: int | None) -> None:
    backend = FakeBackend()
    assert talk(AdminSession(backend), line) == b"OK\n" + P
    assert backend.dnsbl == [suspend]


@pytest.mark.parametrize("line", ["dnsbl", "dnsbl start 5", "dnsbl stop x", "dnsbl stop -1",
                                  "dnsbl stop 4294967296", "dnsbl pause"])
def test_dnsbl_usage(line: str) -> None:
    backend = FakeBackend()
    assert talk(AdminSession(backend), line) == b"usage: dnsbl {start|stop <timeout>}\n" + P
    assert backend.dnsbl == []


def test_info() -> None:
    session = AdminSession(FakeBackend())
    assert talk(session, "info version") == b"2.6\n" + P
    assert talk(session, "info WARRANTY") == b"none\nat all\n" + P
    usage = b"usage: info {copyright|credit|version|warranty}\n" + P
    assert talk(session, "info") == usage
    assert talk(session, "info nothing") == usage


def test_quit_and_terminate() -> None:
    assert AdminSession(FakeBackend()).receive_data(b"quit\r\n").close == ""
    session = AdminSession(FakeBackend(), terminate_allowed=True)
    out = session.receive_data(b"terminate\n")
    assert out.terminate and out.data == b"" and out.close is None


def test_notify_events() -> None:
    session = AdminSession(FakeBackend())
    assert session.event(("network", "in", "start")) == b""  # not asked for yet
    assert talk(session, "notify", "\r\n") == b""  # no reply, no prompt
    assert session.event(("network", "in", "start")) == b"\r\nEVENT: network: in: start  "
    # empty words are left out, runs of spaces collapse, control characters are escaped
    assert session.event(("client", "sent", "emailrelay.1.2.3", "")) == \
        b"\r\nEVENT: client: sent: emailrelay.1.2.3  "
    assert session.event(("client", "sent", "x", "550  bad\tthing")) == \
        b"\r\nEVENT: client: sent: x: 550 bad\\x09thing  "


def test_several_lines_in_one_packet_and_split_lines() -> None:
    session = AdminSession(FakeBackend())
    out = session.receive_data(b"pid\npid\nqu")
    assert out.data == (b"4321\n" + P) * 2 and out.close is None
    assert session.receive_data(b"it\n").close == ""
    # nothing after quit is processed
    out = AdminSession(FakeBackend()).receive_data(b"quit\npid\n")
    assert out.close == "" and out.data == b""


def test_overlong_lines_are_refused() -> None:
    out = AdminSession(FakeBackend()).receive_data(b"x" * 5000)
    assert out.close == "line too long" and out.data.startswith(b"error: line too long")
    out = AdminSession(FakeBackend()).receive_data(b"y" * 5000 + b"\n")
    assert out.close == "line too long"


def test_binary_garbage_is_an_unknown_command() -> None:
    out = AdminSession(FakeBackend()).receive_data(b"\xff\xfe\x00\x01\n")
    assert out.data == b"error: unrecognised command\n" + P
