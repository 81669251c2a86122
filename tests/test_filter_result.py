"""E-MailRelay's exit-code table and the parsing of filter program output."""

from __future__ import annotations

import pytest

from emailrelay.filters.result import (
    CLIENT,
    SERVER,
    FilterResult,
    Verdict,
    failure,
    from_exit_code,
    parse_output,
    split_response_code,
)

OK, ABANDON, FAIL = Verdict.OK, Verdict.ABANDON, Verdict.FAIL


@pytest.mark.parametrize(("code", "server", "client"), [
    (0, (OK, False), (OK, False)),
    (1, (FAIL, False), (FAIL, False)),
    (50, (FAIL, False), (FAIL, False)),
    (99, (FAIL, False), (FAIL, False)),
    (100, (ABANDON, False), (ABANDON, False)),
    (101, (OK, False), (OK, False)),
    (102, (ABANDON, True), (OK, True)),  # server: rescan; client: stop scanning
    (103, (OK, True), (OK, False)),
    (104, (FAIL, True), (ABANDON, True)),
    (105, (FAIL, False), (FAIL, True)),
    (106, (FAIL, False), (FAIL, False)),
    (127, (FAIL, False), (FAIL, False)),
    (255, (FAIL, False), (FAIL, False)),
    (-9, (FAIL, False), (FAIL, False)),  # killed by a signal
])
def test_exit_code_table(code: int, server: tuple, client: tuple) -> None:
    assert from_exit_code(code, SERVER) == server
    assert from_exit_code(code, CLIENT) == client


@pytest.mark.parametrize(("output", "expected"), [
    (b"", ("rejected", 0, "rejected")),
    (b"nothing special\n", ("rejected", 0, "rejected")),
    (b"<<go away>>\n", ("go away", 0, "go away")),
    (b"[[go away]]\n", ("go away", 0, "go away")),
    (b"<<go away>>\n<<because>>\n", ("go away", 0, "because")),
    (b"noise\r\n[[first]]\r\nmore noise\r\n<<second>>\r\n", ("first", 0, "second")),
    (b"<<first>>\r<<second>>", ("first", 0, "second")),  # bare CR ends a line too
    (b"<<550 go away>>\n", ("go away", 550, "go away")),
    (b"<<451 later>>\n<<greylisted>>\n", ("later", 451, "greylisted")),
    (b"<<451\tlater>>\n", ("451\\x09later", 0, "451\\x09later")),  # escaped first
    (b"<<550>>\n", ("", 550, "")),
    (b"<<5501 not a code>>\n", ("5501 not a code", 0, "5501 not a code")),
    (b"<<250 not a failure code>>\n", ("250 not a failure code", 0, "250 not a failure code")),
    (b"<<>>\n<<only the log>>\n", ("rejected", 0, "only the log")),
    (b"<<unterminated\n", ("rejected", 0, "rejected")),
    (b" <<not at the start>>\n", ("rejected", 0, "rejected")),
    (b"<<a>b>> trailing\n", ("a>b", 0, "a>b")),
    (b"<<bell\x07 and escape\x1b>>\n", ("bell\\x07 and escape\\x1b", 0,
                                       "bell\\x07 and escape\\x1b")),
    (b"<<caf\xc3\xa9 \xff>>\n", ("caf\u00e9 \ufffd", 0, "caf\u00e9 \ufffd")),
])
def test_output_forms(output: bytes, expected: tuple[str, int, str]) -> None:
    assert parse_output(output) == expected


def test_split_response_code() -> None:
    assert split_response_code("452 full") == (452, "full")
    assert split_response_code("599") == (599, "")
    assert split_response_code("600 no") == (0, "600 no")
    assert split_response_code("45 x") == (0, "45 x")


def test_describe_matches_emailrelay_summary() -> None:
    assert FilterResult(OK).describe(SERVER) == "ok response=[]"
    assert FilterResult(OK, True).describe(SERVER) == "ok +rescan response=[]"
    assert FilterResult(OK, True).describe(CLIENT) == "ok +break response=[]"
    assert FilterResult(ABANDON).describe(SERVER) == "ok(abandon) response=[]"
    assert failure("rejected").describe(SERVER) == "failed response=[rejected]"
    assert failure("no", "why").describe(SERVER) == "failed response=[no] reason=[why]"
