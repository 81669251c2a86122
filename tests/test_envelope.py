"""Envelope files: exact bytes as E-MailRelay 2.6 writes them, and every older format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emailrelay.spool.envelope import Envelope, EnvelopeError, parse
from emailrelay.util import xtext

# Written by hand in E-MailRelay 2.6's layout (CRLF, "key: value" even when empty).
E_MAILRELAY_26 = (
    b"X-MailRelay-Format: #2821.8\r\n"
    b"X-MailRelay-Content: 8bit\r\n"
    b"X-MailRelay-From: alice@example.com\r\n"
    b"X-MailRelay-ToCount: 3\r\n"
    b"X-MailRelay-To-Local: postmaster\r\n"
    b"X-MailRelay-To-Remote: bob@example.net\r\n"
    b"X-MailRelay-To-Remote: carol@example.org\r\n"
    b"X-MailRelay-Authentication: alice+20smith\r\n"
    b"X-MailRelay-Client: 192.168.1.10\r\n"
    b"X-MailRelay-ClientCertificate: \r\n"
    b"X-MailRelay-MailFromAuthIn: alice\r\n"
    b"X-MailRelay-MailFromAuthOut: \r\n"
    b"X-MailRelay-ForwardTo: example.net\r\n"
    b"X-MailRelay-ForwardToAddress: 192.0.2.1:25\r\n"
    b"X-MailRelay-ClientAccountSelector: work\r\n"
    b"X-MailRelay-Utf8MailboxNames: 0\r\n"
    b"X-MailRelay-End: 1\r\n"
)


def test_reads_a_2_6_envelope() -> None:
    env = parse(E_MAILRELAY_26)
    assert env.format == "#2821.8"
    assert env.body_type == "8bit"
    assert env.from_ == "alice@example.com"
    assert env.to_local == ["postmaster"]
    assert env.to_remote == ["bob@example.net", "carol@example.org"]
    assert env.authentication == "alice smith"
    assert env.client == "192.168.1.10"
    assert env.mail_from_auth_in == "alice"
    assert env.forward_to == "example.net"
    assert env.forward_to_address == "192.0.2.1:25"
    assert env.client_account_selector == "work"
    assert env.utf8_mailbox_names is False


def test_writes_byte_for_byte_what_it_read() -> None:
    assert parse(E_MAILRELAY_26).to_bytes() == E_MAILRELAY_26


def test_reads_the_oldest_format_and_writes_the_current_one() -> None:
    old = (b"X-MailRelay-Format: #2821.3\r\nX-MailRelay-Content: 8bit\r\n"
           b"X-MailRelay-From: sender\r\nX-MailRelay-ToCount: 2\r\n"
           b"X-MailRelay-To-Remote: r1@f.q.d.n\r\nX-MailRelay-To-Remote: r2@f.q.d.n\r\n"
           b"X-MailRelay-Authentication: \r\nX-MailRelay-Client: 127.0.0.1\r\n"
           b"X-MailRelay-End: 1\r\n")
    env = parse(old)
    assert env.to_remote == ["r1@f.q.d.n", "r2@f.q.d.n"]
    assert parse(env.to_bytes()).format == "#2821.8"


@pytest.mark.parametrize("fmt,tail", [
    ("#2821.4", "X-MailRelay-ClientName: host\nX-MailRelay-ClientCertificate: \n"),
    ("#2821.5", "X-MailRelay-ClientCertificate: \nX-MailRelay-MailFromAuthIn: \n"
                "X-MailRelay-MailFromAuthOut: \n"),
    ("#2821.6", "X-MailRelay-ClientCertificate: \nX-MailRelay-MailFromAuthIn: \n"
                "X-MailRelay-MailFromAuthOut: \nX-MailRelay-ForwardTo: \n"
                "X-MailRelay-ForwardToAddress: 10.0.0.1:25\n"),
    ("#2821.7", "X-MailRelay-ClientCertificate: \nX-MailRelay-MailFromAuthIn: \n"
                "X-MailRelay-MailFromAuthOut: \nX-MailRelay-ForwardTo: \n"
                "X-MailRelay-ForwardToAddress: \nX-MailRelay-Utf8MailboxNames: 1\n"),
])
def test_reads_intermediate_formats_with_lf_endings(fmt: str, tail: str) -> None:
    text = (f"X-MailRelay-Format: {fmt}\nX-MailRelay-Content: 7bit\nX-MailRelay-From: a@b\n"
            "X-MailRelay-ToCount: 1\nX-MailRelay-To-Remote: c@d\n"
            "X-MailRelay-Authentication:\nX-MailRelay-Client: 10.1.1.1\n" + tail
            + "X-MailRelay-End: 1\n")
    env = parse(text.encode())
    assert env.format == fmt and env.to_remote == ["c@d"]


def test_folded_client_certificate_round_trips() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\nabcd\n-----END CERTIFICATE-----"
    env = Envelope(from_="a@b", to_remote=["c@d"], client_certificate=pem)
    data = env.to_bytes()
    assert b"X-MailRelay-ClientCertificate: -----BEGIN CERTIFICATE-----\r\n MIIB\r\n" in data
    assert parse(data).client_certificate == pem


def test_failure_reason_lines_are_kept_after_the_end() -> None:
    data = (E_MAILRELAY_26 + b"X-MailRelay-Reason: 550 no such user\r\n"
            b"X-MailRelay-ReasonCode: 550\r\n")
    env = parse(data)
    assert env.extra_value("Reason") == "550 no such user"
    assert env.extra_value("ReasonCode") == "550"
    assert env.to_bytes() == data


@pytest.mark.parametrize("data,message", [
    (b"", "truncated"),
    (b"X-MailRelay-Format: #9999.1\r\n", "unknown format"),
    (E_MAILRELAY_26.replace(b"ToCount: 3", b"ToCount: x"), "ToCount"),
    (E_MAILRELAY_26.replace(b"ToCount: 3", b"ToCount: 4"), "bad 'to' line"),
    (E_MAILRELAY_26.replace(b"X-MailRelay-End: 1\r\n", b""), "no end line"),
    (E_MAILRELAY_26[:200], "truncated|expected|bad .to. line"),
    (E_MAILRELAY_26[:400], "truncated|expected"),
    (E_MAILRELAY_26.replace(b"MailFromAuthIn: alice", b"MailFromAuthIn: a+zz"), "xtext"),
])
def test_corrupt_envelopes_are_reported(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse(data)


addresses = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                    max_size=40).map(str.strip).filter(lambda s: s != "")


@given(st.builds(Envelope, from_=addresses, to_local=st.lists(addresses, max_size=3),
                 to_remote=st.lists(addresses, max_size=3),
                 body_type=st.sampled_from(["7bit", "8bit", "binarymime"]),
                 authentication=st.text(max_size=20), client=st.just("10.0.0.1"),
                 forward_to_address=st.just(""), client_account_selector=st.just("x"),
                 utf8_mailbox_names=st.booleans()))
def test_envelope_round_trip(env: Envelope) -> None:
    back = parse(env.to_bytes())
    assert back == env


@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext.encode(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    assert xtext.valid(encoded)
    assert xtext.decode(encoded) == text.encode("utf-8", "surrogatepass").decode("utf-8",
                                                                                  "replace")


@given(st.text())
def test_xtext_decode_never_fails(text: str) -> None:
    xtext.decode(text)


def test_a_folded_line_in_any_field_is_written_folded_again() -> None:
    # Found by fuzzing: a continuation line under X-MailRelay-Client was read with a newline
    # in the value and written back raw, so the rewritten envelope (after a retry, say)
    # could not be read any more.
    text = E_MAILRELAY_26.replace(b"X-MailRelay-Client: ", b"X-MailRelay-Client: 127.0.0.\r\n 1")
    env = parse(text)
    again = parse(env.to_bytes())
    assert again == env
    assert b"X-MailRelay-Client: 127.0.0.\r\n 1" in env.to_bytes()
