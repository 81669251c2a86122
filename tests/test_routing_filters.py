"""split: and mx: against a real DNS server (Debian's dnsmasq) started by the tests."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.chain import FilterChain
from emailrelay.filters.client import ClientFilters, run_client_filters
from emailrelay.filters.mx import MxConfig, parse_forward_to, parse_options
from emailrelay.filters.result import CLIENT, SERVER, Verdict
from emailrelay.filters.spec import parse_chain
from emailrelay.spool.envelope import Envelope, parse
from emailrelay.spool.store import Spool
from tests.support.helpers import Dnsmasq, new_message, stored_message

RECORDS = [
    "--local=/test/",
    "--mx-host=example.test,mail.example.test,10",
    "--mx-host=example.test,backup.example.test,20",
    "--host-record=mail.example.test,192.0.2.25",
    "--host-record=backup.example.test,192.0.2.26",
    "--host-record=nomx.test,192.0.2.27",
    "--mx-host=v6.test,mx6.v6.test,5",
    "--host-record=mx6.v6.test,2001:db8::25",
    "--mx-host=default.test,any.default.test,5",
    "--host-record=any.default.test,0.0.0.0",
    "--mx-host=broken.test,missing.broken.test,5",
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base)")
    server = Dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS)
    yield server
    server.stop()


def chain(spool: Spool, spec: str, kind: str = SERVER, timeout: float = 10) -> FilterChain:
    return FilterChain(parse_chain([spec])[0],
                       FilterConfig(kind, spool, timeout, "example.com", spool.directory))


@pytest.mark.parametrize(("forward_to", "address"), [
    ("example.test", "192.0.2.25:25"),  # the most preferred MX
    ("EXAMPLE.test:2525", "192.0.2.25:2525"),
    ("postmaster@example.test", "192.0.2.25:25"),
    ("nomx.test", "192.0.2.27:25"),  # no MX: the domain itself
    ("v6.test", "[2001:db8::25]:25"),  # AAAA when there is no A
    ("default.test", ""),  # 0.0.0.0: the default --forward-to
    ("[192.0.2.9]", "192.0.2.9:25"),  # address literal: no lookup
    ("[IPv6:2001:db8::9]:26", "[2001:db8::9]:26"),
])
def test_mx_sets_forward_to_address(dns: Dnsmasq, tmp_path: Path, forward_to: str,
                                    address: str) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(to_remote=["x@y"], forward_to=forward_to,
                                          forward_to_address="stale"))
    result = asyncio.run(chain(spool, f"mx:127.0.0.1:{dns.port}").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert result.verdict is Verdict.OK
    assert parse(message.new_envelope_path.read_bytes()).forward_to_address == address


@pytest.mark.parametrize("forward_to", ["nosuch.test", "broken.test"])
def test_mx_failure_clears_the_address_and_fails(dns: Dnsmasq, tmp_path: Path,
                                                 forward_to: str) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(forward_to=forward_to, forward_to_address="stale"))
    result = asyncio.run(chain(spool, f"mx:127.0.0.1:{dns.port};nst=2").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert result.verdict is Verdict.FAIL and result.response == "failed"
    assert result.reason.startswith("mx: ")
    assert parse(message.new_envelope_path.read_bytes()).forward_to_address == ""



@pytest.fixture
def silent_dns() -> Iterator[int]:
    """A UDP port on the loopback that takes queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_mx_nst_and_rt_bound_a_lookup_that_gets_no_answer(silent_dns: int, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """``nst=1`` gives each query a second, ``rt=3`` the whole lookup three: the filter
    gives up after rt (not the 10s --filter-timeout), fails naming the expired lifetime
    and the per-query timeouts, and clears ForwardToAddress."""
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(forward_to="example.test",
                                          forward_to_address="stale"))
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="emailrelay.filters"):
        result = asyncio.run(chain(spool, f"mx:127.0.0.1:{silent_dns};nst=1;rt=3").run(
            FilterJob(message.id, message.content_path, message.new_envelope_path)))
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 6, elapsed
    assert result.verdict is Verdict.FAIL and result.response == "failed"
    assert result.reason.startswith("mx: The resolution lifetime expired after 3."), \
        result.reason
    assert (f"Server Do53:127.0.0.1@{silent_dns} answered The DNS operation timed out "
            "after 1.000 seconds") in result.reason
    assert parse(message.new_envelope_path.read_bytes()).forward_to_address == ""
    assert (f"filter [mx:]: [{message.id}]: setting forward-to-address [] "
            "(mx: The resolution lifetime expired after 3.") in caplog.text, caplog.text


def test_mx_filter_timeout_cuts_a_longer_rt_short(silent_dns: int, tmp_path: Path) -> None:
    """With rt= longer than --filter-timeout the filter's own timeout ends the lookup:
    the reason is then a plain "mx: timeout"."""
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(forward_to="example.test"))
    started = time.monotonic()
    result = asyncio.run(chain(spool, f"mx:127.0.0.1:{silent_dns};nst=1;rt=30",
                               timeout=2).run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert 2 <= time.monotonic() - started < 5
    assert result.verdict is Verdict.FAIL and result.reason == "mx: timeout"

def test_mx_without_forward_to_does_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool)
    before = message.new_envelope_path.read_bytes()
    result = asyncio.run(chain(spool, "mx:127.0.0.1:9").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert result.verdict is Verdict.OK
    assert message.new_envelope_path.read_bytes() == before


def test_mx_option_parsing() -> None:
    config, warnings = parse_options("127.0.0.1:5353;::1;[::1]:54;nst=3;rt=7;junk;nst=")
    assert config == MxConfig((("127.0.0.1", 5353), ("::1", 53), ("::1", 54)), 3.0, 7.0)
    assert warnings == ["invalid mx filter configuration: ignoring [junk]",
                        "invalid mx filter configuration: ignoring [nst=]"]
    assert parse_forward_to("user@Example.com:26").domain == "Example.com"
    assert parse_forward_to("[300.1.1.1]").literal == ""


def test_split_then_mx_routes_each_domain(dns: Dnsmasq, tmp_path: Path) -> None:
    """E-MailRelay's recipe: --filter=split: and --client-filter=mx:."""
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(
        from_="a@example.org", to_local=["postmaster"],
        to_remote=["one@nomx.test", "two@Example.test", "three@example.TEST",
                   "four@v6.test"]))
    result = asyncio.run(chain(spool, "split:").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert result.verdict is Verdict.OK and result.special  # asks for a rescan
    message._publish()
    ids = sorted(spool.ready())
    envelopes = {i: spool.read_envelope(i) for i in ids}
    groups = sorted((e.forward_to, e.to_remote, e.to_local) for e in envelopes.values())
    assert groups == [
        ("example.test", ["two@Example.test", "three@example.TEST"], ["postmaster"]),
        ("nomx.test", ["one@nomx.test"], []),
        ("v6.test", ["four@v6.test"], []),
    ]
    original = envelopes[message.id]
    assert original.extra_value("SplitGroupCount") == "3"
    assert sorted(line.split(": ")[1] for line in original.extra
                  if "SplitGroup:" in line) == ids
    contents = {spool.content_path(i).stat().st_ino for i in ids}
    assert len(contents) == 1  # hard links to one content file

    client = ClientFilters(parse_chain([f"mx:127.0.0.1:{dns.port}"])[0], FilterConfig(
        CLIENT, spool, 10, "example.com", spool.directory))
    addresses = {}
    for i in ids:
        locked = spool.lock(i)
        assert locked is not None
        outcome = asyncio.run(run_client_filters(client, locked))
        assert outcome.ok
        addresses[locked.envelope.forward_to] = locked.envelope.forward_to_address
        locked.release()
    assert addresses == {"example.test": "192.0.2.25:25", "nomx.test": "192.0.2.27:25",
                         "v6.test": "[2001:db8::25]:25"}


def test_split_raw_and_port(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(to_remote=["a@X.test", "b@x.test"]))
    asyncio.run(chain(spool, "split:raw;2525").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    message._publish()
    assert sorted((spool.read_envelope(i).forward_to, spool.read_envelope(i).to_remote)
                  for i in spool.ready()) == [("X.test:2525", ["a@X.test"]),
                                              ("x.test:2525", ["b@x.test"])]


def test_split_with_one_domain_only_sets_forward_to(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    message = new_message(spool, Envelope(to_remote=["a@x.test", "b@X.TEST"]))
    result = asyncio.run(chain(spool, "split:").run(
        FilterJob(message.id, message.content_path, message.new_envelope_path)))
    assert result.verdict is Verdict.OK and not result.special
    envelope = parse(message.new_envelope_path.read_bytes())
    assert envelope.forward_to == "x.test" and envelope.extra == []
    assert stored_message(spool)  # (the spool is still usable)
