"""--dnsbl: configuration, RFC 5782 names, and checks against real DNS servers.

The checker is tested directly with client addresses, against a dnspython test server
(listed, unlisted, slow, failing lists) and against Debian's dnsmasq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emailrelay.policy.dnsbl import (
    Answer,
    DnsblChecker,
    DnsblConfig,
    DnsblConfigError,
    DnsblResult,
    Verdict,
    parse_nameserver,
    query_name,
)
from tests.support.dnsserver import DnsServer
from tests.support.helpers import Dnsmasq

CLIENT4 = "192.0.2.99"
CLIENT6 = "2001:db8::99"
LISTED4 = "99.2.0.192"
LISTED6 = "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("emailrelay"), "propagate", True)


# -- configuration --------------------------------------------------------------------------

def test_new_format_with_defaults() -> None:
    config = DnsblConfig.parse("spam.example.com,block.example.com")
    assert config.lists == ("spam.example.com", "block.example.com")
    assert (config.threshold, config.timeout, config.block_when_undecided) == (1, 5.0, False)
    assert config.nameserver is None


def test_new_format_all_fields() -> None:
    config = DnsblConfig.parse("spam.example.com,block.example.com,2,500,1.1.1.1:53")
    assert config.lists == ("spam.example.com", "block.example.com")
    assert (config.threshold, config.timeout, config.nameserver) == (2, 0.5, ("1.1.1.1", 53))


def test_legacy_reversed_order() -> None:
    config = DnsblConfig.parse("1.1.1.1:53,500,1,spam.example.com,block.example.com")
    assert config.lists == ("spam.example.com", "block.example.com")
    assert (config.threshold, config.timeout, config.nameserver) == (1, 0.5, ("1.1.1.1", 53))
    legacy_default_server = DnsblConfig.parse(",-2s,2,bl.example")
    assert legacy_default_server.nameserver is None
    assert legacy_default_server.timeout == 2.0 and legacy_default_server.block_when_undecided


def test_negative_timeout_blocks_when_undecided_and_seconds_suffix() -> None:
    config = DnsblConfig.parse("bl.example,1,-5000")
    assert config.block_when_undecided and config.timeout == 5.0
    assert DnsblConfig.parse("bl.example,1,3s").timeout == 3.0


def test_threshold_zero_only_logs() -> None:
    assert DnsblConfig.parse("bl.example,0").log_only


def test_ipv6_dns_server_and_default_port() -> None:
    assert DnsblConfig.parse("bl.example,1,100,[::1]:5353").nameserver == ("::1", 5353)
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("::1") == ("::1", 53)


@pytest.mark.parametrize(("text", "error"), [
    ("", "not enough comma-separated fields"),
    ("1.1.1.1:53,500,1", "not enough comma-separated fields"),
    ("bl.example,1,500,127.0.0.1:53,extra", "unused fields: extra"),
    ("bl.example,1.5", "invalid threshold \"1.5\""),
    ("bl.example,1,-1x", "invalid timeout \"-1x\""),
    ("bl.example,1,0", "invalid timeout \"0\""),
    ("bl.example,1,500,dns.example:53", "invalid dns server address"),
    ("bl.example,1,500,127.0.0.1:99999", "bad port"),
    ("1.1.1.1:53,500,1,bad..name", "invalid list name"),
    # Found by the dnsbl fuzz target: a name with no room for an IPv6 client's 64 octets
    # of nibbles made every check of such a client raise.
    ("1.1.1.1:53,500,1," + ".".join(["a" * 60] * 3) + ".example",
     "list name too long"),
])
def test_bad_configurations(text: str, error: str) -> None:
    with pytest.raises(DnsblConfigError, match=error.replace("(", r"\(")):
        DnsblConfig.parse(text)


def test_rfc5782_query_names() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example."
    assert query_name("2001:db8::99", "bl.example") == f"{LISTED6}.bl.example."
    # an IPv4 client on a dual-stack socket is looked up as IPv4
    assert query_name("::ffff:192.0.2.99", "bl.example") == "99.2.0.192.bl.example."


# -- checks against the test server --------------------------------------------------------

@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.zone("listed.test")
    server.zone("other.test")
    server.zone("clean.test")
    server.zone("slow.test", "slow:2")
    server.zone("failing.test", "servfail")
    server.zone("dead.test", "drop")
    server.zone("odd.test")
    for zone in ("listed.test", "other.test", "slow.test"):
        server.record(f"{LISTED4}.{zone}", "127.0.0.2", ttl=300)
        server.record(f"{LISTED6}.{zone}", "127.0.0.4", ttl=300)
    server.record(f"{LISTED4}.odd.test", "127.255.255.254")  # "you may not query us"
    yield server
    server.stop()


def check(server: DnsServer, config: str, address: str = CLIENT4):
    checker = DnsblChecker(DnsblConfig.parse(f"{config},127.0.0.1:{server.port}"))
    return asyncio.run(checker.check(address))


def test_listed_client_is_denied_and_the_list_named(dns_server: DnsServer, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="emailrelay")
    result = check(dns_server, "clean.test,listed.test,1,2000")
    assert result.verdict is Verdict.DENY and not result.allowed
    assert result.listed_by == ["listed.test"]
    assert result.lists[0].answer is Answer.UNLISTED
    assert result.lists[1].addresses == ["127.0.0.2"]
    result.log()
    assert "dnsbl: client address [192.0.2.99] blocked by [listed.test]" in caplog.text
    assert "address [192.0.2.99] denied by [listed.test]: 127.0.0.2" in caplog.text
    assert "address [192.0.2.99] allowed by [clean.test]" in caplog.text


def test_ipv6_client_listed(dns_server: DnsServer) -> None:
    result = check(dns_server, "listed.test,1,2000", CLIENT6)
    assert result.verdict is Verdict.DENY
    assert result.lists[0].addresses == ["127.0.0.4"]
    assert dns_server.count(f"{LISTED6}.listed.test") >= 1


def test_unlisted_client_is_allowed(dns_server: DnsServer) -> None:
    result = check(dns_server, "clean.test,1,2000", "198.51.100.7")
    assert result.verdict is Verdict.ALLOW and result.allowed
    assert result.lists[0].answer is Answer.UNLISTED


def test_threshold_counts_lists(dns_server: DnsServer) -> None:
    assert check(dns_server, "listed.test,clean.test,2,2000").verdict is Verdict.ALLOW
    assert check(dns_server, "listed.test,other.test,2,2000").verdict is Verdict.DENY


def test_threshold_zero_logs_but_allows(dns_server: DnsServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="emailrelay")
    result = check(dns_server, "listed.test,0,2000")
    assert result.verdict is Verdict.ALLOW and result.listed_by == ["listed.test"]
    result.log()
    assert "listed by [listed.test]: allowed (threshold 0 only logs)" in caplog.text
    assert "blocked" not in caplog.text


def test_decides_early_without_waiting_for_a_slow_list(dns_server: DnsServer) -> None:
    started = time.monotonic()
    result = check(dns_server, "slow.test,listed.test,1,5000")
    assert result.verdict is Verdict.DENY
    assert time.monotonic() - started < 1.8  # the slow list answers after 2 s
    assert result.lists[0].answer is Answer.NO_ANSWER


def test_slow_list_past_the_timeout(dns_server: DnsServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="emailrelay")
    started = time.monotonic()
    allowed = check(dns_server, "slow.test,1,500")
    assert allowed.verdict is Verdict.UNDECIDED_ALLOW and allowed.allowed
    assert 0.4 < time.monotonic() - started < 1.9
    blocked = check(dns_server, "slow.test,1,-500")
    assert blocked.verdict is Verdict.UNDECIDED_DENY and not blocked.allowed
    blocked.log()
    assert "client address [192.0.2.99] blocked: timeout: no answer from [slow.test]" \
        in caplog.text


def test_slow_list_within_the_timeout_is_used(dns_server: DnsServer) -> None:
    assert check(dns_server, "slow.test,1,4000").verdict is Verdict.DENY


def test_failing_and_silent_lists_are_undecided(dns_server: DnsServer, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="emailrelay")
    started = time.monotonic()
    result = check(dns_server, "failing.test,1,-3000")
    assert time.monotonic() - started < 2.5  # SERVFAIL is an answer: no waiting for 3 s
    assert result.verdict is Verdict.UNDECIDED_DENY
    result.log()
    assert "not checked by [failing.test]: SERVFAIL" in caplog.text
    assert check(dns_server, "dead.test,1,300").verdict is Verdict.UNDECIDED_ALLOW
    # a list that cannot reach the threshold does not matter
    assert check(dns_server, "dead.test,clean.test,2,-300").verdict is Verdict.ALLOW


def test_error_codes_are_not_listings(dns_server: DnsServer) -> None:
    result = check(dns_server, "odd.test,1,-2000")
    assert result.lists[0].answer is Answer.NO_ANSWER
    assert "127.255.255.254" in result.lists[0].detail
    assert result.verdict is Verdict.UNDECIDED_DENY


def test_local_clients_are_never_looked_up(dns_server: DnsServer) -> None:
    before = dns_server.total()
    for address in ("127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.9", "::1",
                    "fe80::1", "fd00::1"):
        assert check(dns_server, "listed.test,1,-2000", address).verdict is Verdict.LOCAL
    assert dns_server.total() == before


def test_answers_are_cached_for_their_ttl(dns_server: DnsServer) -> None:
    dns_server.zone("ttl.test")
    dns_server.record(f"{LISTED4}.ttl.test", "127.0.0.2", ttl=1)
    checker = DnsblChecker(DnsblConfig.parse(f"ttl.test,1,2000,127.0.0.1:{dns_server.port}"))

    async def three_checks() -> list[Verdict]:
        first = await checker.check(CLIENT4)
        second = await checker.check(CLIENT4)
        await asyncio.sleep(1.2)
        third = await checker.check(CLIENT4)
        return [first.verdict, second.verdict, third.verdict]

    assert asyncio.run(three_checks()) == [Verdict.DENY] * 3
    assert dns_server.count(f"{LISTED4}.ttl.test") == 2  # the second came from the cache


def test_negative_answers_are_cached_too(dns_server: DnsServer) -> None:
    dns_server.zone("neg.test")
    checker = DnsblChecker(DnsblConfig.parse(f"neg.test,1,2000,127.0.0.1:{dns_server.port}"))

    async def twice() -> None:
        await checker.check("198.51.100.20")
        await checker.check("198.51.100.20")

    asyncio.run(twice())
    assert dns_server.count("20.100.51.198.neg.test") == 1


def test_suspended_checker_does_not_look_up(dns_server: DnsServer) -> None:
    checker = DnsblChecker(DnsblConfig.parse(f"listed.test,1,2000,127.0.0.1:{dns_server.port}"))
    checker.suspend(None)
    assert asyncio.run(checker.check(CLIENT4)).verdict is Verdict.INACTIVE
    checker.suspend(0)
    assert asyncio.run(checker.check(CLIENT4)).verdict is Verdict.DENY
    checker.suspend(3600)
    assert checker.suspended


# -- against dnsmasq ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory) -> Iterator[Dnsmasq]:
    tmp: Path = tmp_path_factory.mktemp("dnsmasq")
    server = Dnsmasq(tmp, ["--local=/bl.test/",
                           f"--host-record={LISTED4}.bl.test,127.0.0.2",
                           f"--host-record={LISTED6}.bl.test,127.0.0.3"])
    yield server
    server.stop()


def test_dnsmasq_listed_and_unlisted_ipv4_and_ipv6(dnsmasq: Dnsmasq) -> None:
    config = DnsblConfig.parse(f"bl.test,1,3000,127.0.0.1:{dnsmasq.port}")

    async def run() -> list[DnsblResult]:
        checker = DnsblChecker(config)
        return [await checker.check(a) for a in (CLIENT4, CLIENT6, "198.51.100.1",
                                                 "2001:db8::1")]

    listed4, listed6, clean4, clean6 = asyncio.run(run())
    assert listed4.verdict is Verdict.DENY and listed4.lists[0].addresses == ["127.0.0.2"]
    assert listed6.verdict is Verdict.DENY and listed6.lists[0].addresses == ["127.0.0.3"]
    assert clean4.verdict is Verdict.ALLOW and clean6.verdict is Verdict.ALLOW


def test_the_longest_list_name_still_holds_an_ipv6_query() -> None:
    zone = ".".join(["a" * 60] * 3) + ".exampl"  # 190 octets on the wire
    config = DnsblConfig.parse(f"{zone},1,500")
    name = query_name("2001:db8::1", config.lists[0])
    assert name.endswith(f".{zone}.") and len(name) == 64 + len(zone) + 1
