"""net: filters: the line protocol, one long-lived connection, reconnection."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.network import NetworkFilter
from emailrelay.filters.result import SERVER, Verdict
from emailrelay.spool.store import Spool
from tests.support.lineserver import LineServer


def config(tmp_path: Path, timeout: float = 5) -> FilterConfig:
    spool = Spool(tmp_path / "spool")
    return FilterConfig(SERVER, spool, timeout, "example.com", spool.directory)


def job(n: int = 1) -> FilterJob:
    return FilterJob(f"emailrelay.1.2.{n}", Path(f"/spool/emailrelay.1.2.{n}.content"),
                     Path(f"/spool/emailrelay.1.2.{n}.envelope.new"))


@pytest.mark.parametrize(("answer", "verdict", "response", "code", "reason"), [
    ("ok", Verdict.OK, "", 0, ""),
    ("ok thanks", Verdict.OK, "", 0, ""),
    ("550 spam detected\tscore 12.5", Verdict.FAIL, "spam detected", 550, "score 12.5"),
    ("no thanks", Verdict.FAIL, "no thanks", 0, "no thanks"),
    ("451 busy", Verdict.FAIL, "busy", 451, "busy"),
    ("", Verdict.FAIL, "rejected", 0, ""),
])
def test_answers(tmp_path: Path, answer: str, verdict: Verdict, response: str, code: int,
                 reason: str) -> None:
    server = LineServer(lambda line: answer)
    try:
        result = asyncio.run(NetworkFilter(server.address, config(tmp_path)).run(job()))
    finally:
        server.close()
    assert (result.verdict, result.response, result.response_code) == (verdict, response, code)
    if verdict is Verdict.FAIL and reason:
        assert result.reason == reason
    assert server.requests == ["/spool/emailrelay.1.2.1.content"]


def test_one_connection_for_many_messages_and_reconnects_after_a_drop(tmp_path: Path) -> None:
    server = LineServer(lambda line: "ok")

    async def scenario() -> list[Verdict]:
        f = NetworkFilter(server.address, config(tmp_path))
        verdicts = [(await f.run(job(n))).verdict for n in range(3)]
        assert server.connections == 1
        server.drop_connections()  # the service restarts
        await asyncio.sleep(0.1)
        verdicts.append((await f.run(job(4))).verdict)
        f.close()
        return verdicts

    try:
        assert asyncio.run(scenario()) == [Verdict.OK] * 4
        assert server.connections == 2
    finally:
        server.close()


def test_server_disconnecting_mid_request_fails_that_message_only(tmp_path: Path) -> None:
    answers = iter([None, "ok"])  # drop the first request, answer the next
    server = LineServer(lambda line: next(answers))

    async def scenario() -> tuple:
        f = NetworkFilter(server.address, config(tmp_path))
        first = await f.run(job(1))
        second = await f.run(job(2))
        f.close()
        return first, second

    try:
        first, second = asyncio.run(scenario())
    finally:
        server.close()
    assert first.verdict is Verdict.FAIL and first.response == "failed"
    assert "closed" in first.reason
    assert second.verdict is Verdict.OK


def test_nothing_listening(tmp_path: Path) -> None:
    server = LineServer(lambda line: "ok")
    address = server.address
    server.close()
    result = asyncio.run(NetworkFilter(address, config(tmp_path)).run(job()))
    assert result.verdict is Verdict.FAIL
    assert "cannot connect" in result.reason and "refused" in result.reason


def test_silent_server_times_out(tmp_path: Path) -> None:
    server = LineServer(lambda line: time.sleep(5) or "ok")  # type: ignore[func-returns-value]
    started = time.monotonic()
    try:
        result = asyncio.run(NetworkFilter(server.address, config(tmp_path, 0.3)).run(job()))
    finally:
        server.close()
    assert result.verdict is Verdict.FAIL and "no response" in result.reason
    assert time.monotonic() - started < 3


def test_unix_domain_socket(tmp_path: Path) -> None:
    server = LineServer(lambda line: "ok", path=str(tmp_path / "filter.s"))
    try:
        result = asyncio.run(NetworkFilter(server.address, config(tmp_path)).run(job()))
    finally:
        server.close()
    assert result.verdict is Verdict.OK
