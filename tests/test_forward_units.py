"""Forwarding pieces without sockets: addresses, options, back-off, request coalescing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emailrelay.forward.address import AddressError, ForwardAddress, parse_forward_address
from emailrelay.forward.agent import Forwarder, ForwardSettings
from emailrelay.forward.retry import DestinationState, RetryPolicy
from emailrelay.options.parser import UsageError, parse
from emailrelay.options.validate import validate
from emailrelay.smtp.client import ClientConfig
from emailrelay.smtp.dataphase import DataScanner
from emailrelay.spool.envelope import Envelope
from emailrelay.spool.envelope import parse as parse_envelope
from emailrelay.spool.store import Spool
from tests.support.relay import run_emailrelay


@pytest.mark.parametrize("text,expected", [
    ("smtp.example.com:25", ForwardAddress("smtp.example.com:25", "smtp.example.com", 25)),
    ("192.0.2.1:587", ForwardAddress("192.0.2.1:587", "192.0.2.1", 587)),
    ("[::1]:25", ForwardAddress("[::1]:25", "::1", 25)),
    ("::1:25", ForwardAddress("::1:25", "::1", 25)),
    ("::1.25", ForwardAddress("::1.25", "::1", 25)),  # E-MailRelay's own display form
    ("2001:db8::1.587", ForwardAddress("2001:db8::1.587", "2001:db8::1", 587)),
    ("::ffff:192.0.2.1:25", ForwardAddress("::ffff:192.0.2.1:25", "::ffff:192.0.2.1", 25)),
    ("::ffff:192.0.2.1.25", ForwardAddress("::ffff:192.0.2.1.25", "::ffff:192.0.2.1", 25)),
    ("mail.example.com:smtp", ForwardAddress("mail.example.com:smtp", "mail.example.com", 25)),
    ("/run/smtp.s", ForwardAddress("/run/smtp.s", "/run/smtp.s", unix=True)),
    ("far.example:25@127.0.0.1:9050",
     ForwardAddress("far.example:25@127.0.0.1:9050", "far.example", 25,
                    socks_host="127.0.0.1", socks_port=9050)),
])
def test_forward_address_forms(text: str, expected: ForwardAddress) -> None:
    assert parse_forward_address(text) == expected


@pytest.mark.parametrize("text", ["", "host", ":25", "host:", "host:0", "host:70000",
                                  "host:nosuchservice", "far:smtp@proxy:1080", "[]:25",
                                  "::1.0", "::1.70000"])
def test_bad_forward_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_forward_address(text)


def test_forward_address_display() -> None:
    assert parse_forward_address("[::1]:25").display() == "[::1]:25"
    assert parse_forward_address("a:1@b:2").display() == "a:1@b:2"


@pytest.mark.parametrize("argv,error", [
    (["--poll", "0", "--forward-to", "a:25"],
     "invalid --poll period: try --forward-on-disconnect"),
    (["--forward"], "--forward requires --forward-to"),
    (["--forward-on-disconnect"], "--forward-on-disconnect requires --forward-to"),
    (["--as-client", "a:25", "--forward-to", "b:25"],
     "--forward-to cannot be used with --as-client or --as-proxy"),
    (["--as-proxy", "a:25", "--forward-to", "b:25"],
     "--forward-to cannot be used with --as-client or --as-proxy"),
    (["--as-client", "a:25", "--port", "25"],
     "the --port option cannot be used with --as-client or --dont-serve"),
    (["--dont-serve", "--port", "25"],
     "the --port option cannot be used with --as-client or --dont-serve"),
    (["--forward-to", "/run/smtp.s", "--client-interface", "127.0.0.1"],
     "the --client-interface option cannot be used with a unix-domain forwarding address"),
    (["--forward-to", "nocolon"], "invalid --forward-to address"),
    (["--forward-connections", "0", "--forward-to", "a:25"], "--forward-connections"),
    (["--retry-delay", "soon", "--forward-to", "a:25"], "--retry-delay"),
])
def test_semantic_errors(argv: list[str], error: str) -> None:
    with pytest.raises(UsageError, match=error.replace("-", r"\-")):
        validate(parse(argv))


def test_forwarding_options_are_accepted() -> None:
    validate(parse(["--forward", "--forward-to", "a:25", "--poll", "60",
                    "--forward-on-disconnect", "--immediate", "--forward-to-some",
                    "--client-interface", "127.0.0.1", "--forward-connections", "4",
                    "--retry-delay", "30", "--retry-max-delay", "600",
                    "--retry-max-age", "86400"]))


def test_semantic_error_exit_code_and_wording() -> None:
    result = run_emailrelay("--forward")
    assert result.returncode == 1
    assert "emailrelay: usage error: --forward requires --forward-to" in result.stderr


def test_exponential_back_off() -> None:
    policy = RetryPolicy(first_delay=60, max_delay=600, max_age=3600)
    assert [policy.delay(n) for n in range(6)] == [0, 60, 120, 240, 480, 600]
    assert policy.delay(10_000) == 600
    assert not policy.expired(1000.0, now=4599.0) and policy.expired(1000.0, now=4600.0)
    assert not RetryPolicy(max_age=0).expired(0.0, now=1e12)


def test_destination_state() -> None:
    state = DestinationState()
    policy = RetryPolicy(first_delay=10, max_delay=100)
    assert not state.down(0)
    state.failed(policy, "refused", now=100)
    assert state.down(105) and not state.down(110)
    state.failed(policy, "refused", now=110)
    assert state.next_probe == 130
    state.succeeded()
    assert not state.down(111)


def test_retry_state_lives_after_the_end_line() -> None:
    envelope = Envelope(from_="a@b", to_remote=["c@d"])
    envelope.set_retry(3, 1_800_000_000)
    data = envelope.to_bytes()
    end = data.index(b"X-MailRelay-End: 1\r\n")
    assert data[end:].endswith(b"X-MailRelay-RetryCount: 3\r\nX-MailRelay-RetryAfter: "
                               b"1800000000\r\n")
    again = parse_envelope(data)
    assert (again.retry_count, again.retry_after) == (3, 1_800_000_000)
    again.set_retry(0, 0)
    assert b"Retry" not in again.to_bytes()


def test_split_end_marker_is_still_the_end() -> None:
    """Regression: ".\\r" then "\\n" in separate reads ended the data with a stray dot."""
    scanner = DataScanner()
    assert scanner.scan(b"hello\r\n").content == b"hello\r\n"
    first = scanner.scan(b".\r")
    assert (first.consumed, first.finished) == (0, False)
    last = scanner.scan(b".\r\n")
    assert (last.content, last.finished) == (b"", True)


def test_requests_coalesce_and_queue_while_busy(tmp_path: Path, caplog) -> None:
    async def scenario() -> list[str]:
        forwarder = Forwarder(Spool(tmp_path / "spool"), ForwardSettings(
            forward_to=parse_forward_address("127.0.0.1:9"), client=ClientConfig()))
        reasons: list[str] = []
        gate = asyncio.Event()

        async def fake_run(reason: str, force: bool):  # type: ignore[no-untyped-def]
            reasons.append(reason)
            await gate.wait()

        forwarder._run = fake_run  # type: ignore[method-assign]
        for reason in ("poll", "admin", "client disconnect"):
            forwarder.request_forward(reason)
        await asyncio.sleep(0.01)
        forwarder.request_forward("rescan")
        forwarder.request_forward("poll")
        await asyncio.sleep(0.01)
        gate.set()
        await forwarder.wait_idle()
        return reasons

    with caplog.at_level("INFO", logger="emailrelay"):
        reasons = asyncio.run(scenario())
    assert reasons == ["client disconnect", "poll"]
    assert "forwarding: [poll]: still busy from last time" in caplog.text
    assert "forwarding: queued request [poll]" in caplog.text


def test_requests_without_forward_to_are_ignored(tmp_path: Path) -> None:
    async def scenario() -> None:
        forwarder = Forwarder(Spool(tmp_path / "spool"),
                              ForwardSettings(forward_to=None, client=ClientConfig()))
        forwarder.request_forward("admin")
        await asyncio.sleep(0.01)
        assert forwarder._run_task is None

    asyncio.run(scenario())


def test_a_service_name_that_is_not_utf8_is_an_address_error() -> None:
    # Found by fuzzing: bytes from the command line that are not UTF-8 (kept as surrogates)
    # made getservbyname() raise UnicodeEncodeError, a traceback instead of a usage error.
    with pytest.raises(AddressError, match="unknown port or service name"):
        parse_forward_address("host:sm\udc8etp")


def test_the_retry_time_is_rounded_up_never_down() -> None:
    # Found by the retry-schedule test: "will retry in 1s" came after 0.1s, the stored
    # whole second having been cut down.
    envelope = Envelope(from_="a@b", to_remote=["c@d"])
    envelope.set_retry(1, 1_800_000_000.2)
    assert envelope.retry_after == 1_800_000_001
