"""Address verifiers: programs (sh and python), net: servers and account:."""

from __future__ import annotations

import asyncio
import pwd
import sys
from pathlib import Path

import pytest

from emailrelay.verify import build_verifier
from emailrelay.verify.account import AccountOptions, AccountVerifier, parse_options
from emailrelay.verify.base import VerifierConfig, VerifierStatus, VerifyQuery
from emailrelay.verify.network import parse_response
from emailrelay.verify.spec import parse_spec
from tests.support.helpers import script
from tests.support.lineserver import LineServer

CONFIG = VerifierConfig(domain="example.com", timeout=5)
QUERY = VerifyQuery("bob@example.com", "alice@example.org", "192.0.2.1:4321", "example.com",
                    "plain", "alice")


def verify(spec: str, query: VerifyQuery = QUERY, config: VerifierConfig = CONFIG
           ) -> VerifierStatus:
    verifier = build_verifier(parse_spec(spec)[0], config)
    try:
        return asyncio.run(verifier.verify(query))
    finally:
        verifier.close()


def test_program_gets_emailrelay_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args"
    program = script(tmp_path, "v.sh", f"""
for a in "$@"; do echo "[$a]"; done > {out}
echo "Bob Smith"
echo bob
exit 0
""")
    status = verify(str(program))
    assert out.read_text().split("\n")[:6] == [
        "[bob@example.com]", "[alice@example.org]", "[192.0.2.1:4321]", "[example.com]",
        "[plain]", "[alice]"]
    assert status == VerifierStatus.local_mailbox("bob@example.com", "bob", "Bob Smith")


@pytest.mark.parametrize(("body", "expected"), [
    ("echo 'Bob'; echo bob; exit 0",
     VerifierStatus.local_mailbox("bob@example.com", "bob", "Bob")),
    ("echo bob@example.com; echo robert@example.net; exit 1",
     VerifierStatus.remote("bob@example.com", "robert@example.net")),
    ("echo 'no such user'; echo 'not in ldap'; exit 2",
     VerifierStatus.invalid("bob@example.com", "no such user", "not in ldap")),
    ("echo 'try later'; exit 3",
     VerifierStatus.invalid("bob@example.com", "try later", "exit code 3", temporary=True)),
    ("exit 2", VerifierStatus.invalid("bob@example.com", "mailbox unavailable", "exit code 2")),
    ("echo 'odd'; exit 42", VerifierStatus.invalid("bob@example.com", "odd", "exit code 42")),
    ("echo 'one line only'; exit 0",  # exit 0 needs two lines
     VerifierStatus.invalid("bob@example.com", "one line only", "exit code 0")),
    ("exit 100", VerifierStatus.aborted("bob@example.com")),
    ("exit 101", VerifierStatus.invalid("bob@example.com", "mailbox unavailable",
                                        "exit code 101")),
    ("printf 'Bob\\r\\nbob\\r\\n\\n  '; exit 0",
     VerifierStatus.local_mailbox("bob@example.com", "bob", "Bob")),
])
def test_program_exit_codes(tmp_path: Path, body: str, expected: VerifierStatus) -> None:
    assert verify(str(script(tmp_path, "v.sh", body + "\n"))) == expected


def test_python_program_for_vrfy(tmp_path: Path) -> None:
    program = script(tmp_path, "v.py", """
import sys
to, frm = sys.argv[1], sys.argv[2]
print("Postmaster" if frm == "" else "?")
print("postmaster")
""", sys.executable)
    query = VerifyQuery("postmaster", "", "127.0.0.1:1", "example.com", "none", "", "VRFY")
    assert verify(str(program), query) == VerifierStatus.local_mailbox(
        "postmaster", "postmaster", "Postmaster")


def test_program_problems(tmp_path: Path) -> None:
    assert verify(str(tmp_path / "missing")) == VerifierStatus.invalid(
        "bob@example.com", "error", "exec error")
    slow = script(tmp_path, "slow.sh", "sleep 30\n")
    assert verify(str(slow), config=VerifierConfig("example.com", 0.3)) == \
        VerifierStatus.invalid("bob@example.com", "timeout", "timeout", temporary=True)


def test_exit_verifier_accepts_everything_as_remote() -> None:
    assert verify("exit:0") == VerifierStatus.remote("bob@example.com")


@pytest.mark.parametrize(("line", "expected"), [
    ("0|bob|Bob Smith", VerifierStatus.local_mailbox("x", "bob", "Bob Smith")),
    ("0|postmaster", VerifierStatus.local_mailbox("x", "postmaster", "")),
    ("1|x@example.net", VerifierStatus.remote("x", "x@example.net")),
    ("2|mailbox unavailable", VerifierStatus.invalid("x", "mailbox unavailable")),
    ("2|no such user|ldap says no", VerifierStatus.invalid("x", "no such user",
                                                           "ldap says no")),
    ("3|busy", VerifierStatus.invalid("x", "busy", temporary=True)),
    ("100", VerifierStatus.aborted("x")),
    ("1", VerifierStatus.invalid("x", "mailbox unavailable",
                                 "invalid verifier response: [1]")),
    ("banana", VerifierStatus.invalid("x", "mailbox unavailable",
                                      "invalid verifier response: [banana]")),
])
def test_network_responses(line: str, expected: VerifierStatus) -> None:
    assert parse_response("x", line) == expected


def test_network_verifier_protocol_and_reconnection() -> None:
    answers = iter(["0|bob|Bob", None, "1|carol@example.net", "3|later"])
    server = LineServer(lambda line: next(answers))

    async def scenario() -> list[VerifierStatus]:
        verifier = build_verifier(parse_spec(f"net:{server.address}")[0], CONFIG)
        results = [await verifier.verify(QUERY)]  # answered
        results.append(await verifier.verify(QUERY))  # dropped mid-request (retried once)
        results.append(await verifier.verify(QUERY))  # a new connection
        verifier.close()
        return results

    try:
        first, second, third = asyncio.run(scenario())
    finally:
        server.close()
    assert server.requests[0] == \
        "bob@example.com|alice@example.org|192.0.2.1:4321|example.com|plain|alice"
    assert first == VerifierStatus.local_mailbox("bob@example.com", "bob", "Bob")
    # The reused connection was dropped mid-request: the request went out again.
    assert second == VerifierStatus.remote("bob@example.com", "carol@example.net")
    assert third == VerifierStatus.invalid("bob@example.com", "later", temporary=True)
    assert server.connections == 2


def test_network_verifier_server_gone() -> None:
    server = LineServer(lambda line: None)
    try:
        status = verify(f"net:{server.address}")
    finally:
        server.close()
    assert (status.valid, status.temporary, status.response) == (False, True, "cannot verify")


def test_account_options() -> None:
    assert parse_options("") == AccountOptions()
    assert parse_options("1000-1002;lowercase") == AccountOptions((1000, 1002), lowercase=True)
    assert parse_options("l;r") == AccountOptions(lowercase=True, remote=True)
    assert parse_options("lr") == AccountOptions(lowercase=True)  # E-MailRelay's reading
    assert parse_options("check;0-10") == AccountOptions((0, 10), check=True)


def test_account_verifier_against_real_accounts() -> None:
    nobody = pwd.getpwnam("nobody")
    around = f"{nobody.pw_uid}-{nobody.pw_uid}"
    v = AccountVerifier(around, CONFIG)
    assert v.check("nobody@example.com") == VerifierStatus.local_mailbox(
        "nobody@example.com", "nobody")
    assert v.check("NOBODY@EXAMPLE.COM") == VerifierStatus.local_mailbox(
        "NOBODY@EXAMPLE.COM", "nobody")
    assert v.check('"nobody"@example.com').local
    assert v.check("postmaster") == VerifierStatus.local_mailbox("postmaster", "postmaster")
    assert v.check("nobody@elsewhere.org") == VerifierStatus.invalid(
        "nobody@elsewhere.org", "rejected", "[elsewhere.org] does not match [example.com]")
    assert v.check("root@example.com") == VerifierStatus.invalid(
        "root@example.com", "rejected", f"uid 0 is not in the range {around}")
    assert v.check("no-such-user-x@example.com") == VerifierStatus.invalid(
        "no-such-user-x@example.com", "rejected", "[no-such-user-x] is not a valid account name")
    assert AccountVerifier(f"{around};remote", CONFIG).check("nobody@example.com") == \
        VerifierStatus.remote("nobody@example.com")
    assert AccountVerifier(f"{around};check", CONFIG).check("who@elsewhere.org") == \
        VerifierStatus.remote("who@elsewhere.org")
    assert AccountVerifier("0-0", CONFIG).check("root@example.com").local


def test_protocol_vrfy_abort_and_rejection_texts() -> None:
    from emailrelay.smtp import replies
    from emailrelay.smtp.server import (
        NEED_DATA,
        PAUSED,
        Close,
        ServerConfig,
        ServerProtocol,
        VerifyRequest,
    )
    p = ServerProtocol(ServerConfig(verify_recipients=True))
    p.receive_data(b"EHLO c\r\nVRFY <bob@example.com>\r\n")
    events = []
    while (event := p.next_event()) not in (NEED_DATA, PAUSED):
        events.append(event)
    assert isinstance(events[-1], VerifyRequest) and events[-1].address == "bob@example.com"
    p.vrfy_checked(abort=True)
    assert p.next_event() == Close("address verifier abort")
    assert replies.rcpt_rejected("bob@example.com", "no such user", temporary=False) == \
        "550 no such user"
    assert replies.rcpt_rejected("b\u00f6b@example.com", "busy", temporary=True) == \
        "450 recipient <b\u00f6b@example.com> busy"
    assert replies.vrfy_not_verified("", temporary=False) == "550 mailbox unavailable"
