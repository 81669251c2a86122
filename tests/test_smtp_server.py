"""The sans-I/O SMTP server: replies, states, pipelining, DATA, BDAT and hostile input."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emailrelay.smtp import replies
from emailrelay.smtp import server as proto
from emailrelay.smtp.server import ServerConfig, ServerProtocol


@dataclass
class Driver:
    """Feeds bytes and answers the protocol's requests like a session would."""

    protocol: ServerProtocol
    sent: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    closed: str | None = None
    bodies: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # reasons, for the metrics
    store_reply: str = replies.MESSAGE_PROCESSED
    _current: bytearray | None = None

    def feed(self, data: bytes) -> list[str]:
        before = len(self.sent)
        self.protocol.receive_data(data)
        self._drain()
        return self.sent[before:]

    def _drain(self) -> None:
        p = self.protocol
        while True:
            ev = p.next_event()
            if ev is proto.NEED_DATA:
                return
            if isinstance(ev, proto.Send):
                self.sent.extend(ev.lines)
            elif isinstance(ev, proto.MessageStart):
                self._current = bytearray()
            elif isinstance(ev, proto.MessageData):
                assert self._current is not None
                self._current += ev.data
            elif isinstance(ev, proto.MessageAbort):
                self.aborted.append(ev.reason)
                self._current = None
            elif isinstance(ev, proto.MessageComplete):
                assert self._current is not None
                self.messages.append(bytes(self._current))
                self.bodies.append(ev.transaction.body)
                self._current = None
                p.message_stored(self.store_reply)
            elif isinstance(ev, proto.Close):
                self.closed = ev.reason
            elif isinstance(ev, proto.ProtocolWarning):
                pass
            elif isinstance(ev, proto.Notice):
                self.notices.append(ev.text)
            elif isinstance(ev, proto.Rejected):
                self.rejected.append(ev.reason)
            else:
                raise AssertionError(ev)


def driver(**config: object) -> Driver:
    d = Driver(ServerProtocol(ServerConfig(domain="relay.example", **config)))
    d.sent.extend(d.protocol.greeting().lines)
    return d


def session(d: Driver) -> None:
    d.feed(b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")


def test_greeting_and_ehlo_in_e_mailrelay_order() -> None:
    d = driver(max_size=1000, chunking=True, smtputf8=True)
    assert d.sent == ["220 relay.example -- E-MailRelay V2.6 -- Service ready"]
    assert d.feed(b"EHLO c\r\n") == ["250-relay.example says hello", "250-SIZE 1000",
                                     "250-VRFY", "250-CHUNKING", "250-BINARYMIME",
                                     "250-PIPELINING", "250-SMTPUTF8", "250 8BITMIME"]


def test_anonymous_server_says_less() -> None:
    d = driver(anonymous_server=True, vrfy_enabled=False)
    assert d.sent == ["220 greeting"]
    assert d.feed(b"EHLO c\r\n") == ["250-smtp says hello", "250-PIPELINING", "250 8BITMIME"]
    assert d.feed(b"VRFY bob\r\n") == ["252 cannot vrfy"]


def test_a_whole_transaction() -> None:
    d = driver()
    assert d.feed(b"HELO c\r\n") == ["250 hello"]
    assert d.feed(b"MAIL FROM:<a@example.com>\r\n") == ["250 sender <a@example.com> OK"]
    assert d.feed(b"RCPT TO:<b@example.com>\r\n") == ["250 recipient <b@example.com> OK"]
    assert d.feed(b"DATA\r\n") == ["354 start mail input -- end with <CRLF>.<CRLF>"]
    assert d.feed(b"Subject: hi\r\n\r\n..dot\r\n.x\r\nend\r\n.\r\n") == ["250 message processed"]
    assert d.messages == [b"Subject: hi\r\n\r\n.dot\r\nx\r\nend\r\n"]
    assert d.feed(b"QUIT\r\n") == ["221 OK"]
    assert d.closed == ""


def test_pipelined_commands_get_replies_in_order() -> None:
    d = driver()
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"
                 b"body\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    assert out[-8:] == ["250 sender <a@x> OK", "250 recipient <b@x> OK",
                        "250 recipient <c@x> OK", replies.START_DATA, "250 message processed",
                        "250 state reset", "250 noop", "221 OK"]
    assert d.messages == [b"body\r\n"]


def test_data_split_at_every_byte_gives_the_same_message() -> None:
    data = b"a\r\n..b\r\n.\r\r\n\r\n.c\r\n.\r\n"
    whole = driver()
    session(whole)
    whole.feed(b"DATA\r\n" + data)
    pieces = driver()
    session(pieces)
    pieces.feed(b"DATA\r\n")
    for i in range(len(data)):
        pieces.feed(data[i:i + 1])
    assert pieces.messages == whole.messages == [b"a\r\n.b\r\n\r\n\r\n\r\nc\r\n"]


def test_empty_message() -> None:
    d = driver()
    session(d)
    assert d.feed(b"DATA\r\n.\r\n")[-1] == "250 message processed"
    assert d.messages == [b""]


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"])
def test_only_crlf_dot_crlf_ends_data(smuggle: bytes) -> None:
    d = driver()
    session(d)
    out = d.feed(b"DATA\r\nhello" + smuggle + b"MAIL FROM:<evil@x>\r\n")
    assert out == [replies.START_DATA]  # still inside the message
    assert d.feed(b"\r\n.\r\n") == ["250 message processed"]
    stored = d.messages[0]
    assert b"MAIL FROM:<evil@x>" in stored
    # Bare CR and LF are stored as CRLF: nothing downstream can misread them.
    assert stored.count(b"\n") == stored.count(b"\r\n")
    assert stored.count(b"\r") == stored.count(b"\r\n")


def test_out_of_sequence_commands() -> None:
    d = driver()
    assert d.feed(b"MAIL FROM:<a@x>\r\n") == [replies.OUT_OF_SEQUENCE]
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"RCPT TO:<b@x>\r\n") == [replies.OUT_OF_SEQUENCE]
    assert d.feed(b"DATA\r\n") == [replies.OUT_OF_SEQUENCE]
    d.feed(b"MAIL FROM:<a@x>\r\n")
    assert d.feed(b"MAIL FROM:<a@x>\r\n") == [replies.OUT_OF_SEQUENCE]
    assert d.feed(b"DATA\r\n") == ["554 no valid recipients"]


@pytest.mark.parametrize("command,reply", [
    (b"MAIL FROM:a@x", "553 mailbox name not allowed: missing angle brackets in mailbox name"),
    (b"MAIL TO:<a@x>", "553 mailbox name not allowed: invalid mail-from command"),
    (b"MAIL FROM:<a@x", "553 mailbox name not allowed: invalid angle brackets in mailbox name"),
    (b"MAIL FROM:<a@x>junk",
     "553 mailbox name not allowed: invalid angle brackets in mailbox name"),
    (b"MAIL FROM:<a\x00b@x>", "553 mailbox name not allowed: invalid character in mailbox name"),
    (b"MAIL FROM:<a@x> BODY=9BIT", "553 mailbox name not allowed: invalid mail-from parameter"),
    (b"MAIL FROM:<a@x> SMTPUTF8=yes", "553 mailbox name not allowed: invalid mail-from parameter"),
    (b"EHLO", "501 parameter required"),
    (b"FROB", "500 command unrecognized"),
    (b"", "500 command unrecognized"),
    (b"BDAT 10", "500 command unrecognized"),
    (b"STARTTLS", "500 command unrecognized"),
    (b"AUTH PLAIN", "502 command not implemented"),
    (b"EXPN staff", "502 command not implemented"),
])
def test_malformed_commands(command: bytes, reply: str) -> None:
    d = driver()
    d.feed(b"EHLO c\r\n")
    assert d.feed(command + b"\r\n") == [reply]


def test_relaxed_parsing_accepts_addresses_without_brackets() -> None:
    d = driver(strict_parsing=False)
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"MAIL FROM:a@x\r\n") == ["250 sender <a@x> OK"]
    assert d.feed(b"RCPT TO: b@x\r\n") == ["250 recipient <b@x> OK"]


def test_source_routes_and_spaces_after_the_colon() -> None:
    d = driver()
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"MAIL FROM: <@relay.example:a@x>\r\n") == [
        "250 sender <@relay.example:a@x> OK"]
    assert d.protocol.transaction.mail_from == "a@x"


def test_empty_reverse_path_is_allowed_but_not_an_empty_recipient() -> None:
    d = driver()
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"MAIL FROM:<>\r\n") == ["250 sender <> OK"]
    assert d.feed(b"RCPT TO:<>\r\n") == ["550 invalid mailbox name"]


def test_size_limit_by_declaration_and_by_content() -> None:
    d = driver(max_size=100)
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"MAIL FROM:<a@x> SIZE=101\r\n") == [replies.SIZE_EXCEEDED]
    d.feed(b"MAIL FROM:<a@x> SIZE=50\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    assert d.feed(b"x" * 150 + b"\r\n.\r\n") == [replies.SIZE_EXCEEDED]
    assert d.messages == [] and len(d.aborted) == 1
    assert d.rejected == ["size", "size"]
    # The session goes on normally.
    d.feed(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    assert d.feed(b"small\r\n.\r\n") == ["250 message processed"]


def test_too_many_recipients() -> None:
    d = driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x>\r\n")
    d.feed(b"".join(b"RCPT TO:<r%d@x>\r\n" % i for i in range(proto.RECIPIENT_LIMIT)))
    assert d.feed(b"RCPT TO:<one-too-many@x>\r\n") == [replies.TOO_MANY_RECIPIENTS]
    assert d.rejected == ["recipients"]


def test_over_long_command_line() -> None:
    d = driver()
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"NOOP " + b"x" * 10000) == []
    assert d.feed(b"y" * 10000 + b"\r\nNOOP\r\n") == [replies.LINE_TOO_LONG, "250 noop"]


def test_over_long_header_line_rejects_the_message() -> None:
    d = driver()
    session(d)
    out = d.feed(b"DATA\r\nSubject: " + b"x" * 1200 + b"\r\n\r\nbody\r\n.\r\n")
    assert out[-1] == replies.HEADER_LINE_TOO_LONG
    assert d.messages == [] and d.rejected == ["content"]


def test_long_body_lines_are_accepted() -> None:
    d = driver()
    session(d)
    d.feed(b"DATA\r\nSubject: ok\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n")
    assert len(d.messages) == 1


def test_nul_in_data_rejects_the_message() -> None:
    d = driver()
    session(d)
    assert d.feed(b"DATA\r\nSubject: x\r\n\r\na\x00b\r\n.\r\n")[-1] == replies.NUL_IN_DATA
    assert d.rejected == ["content"]


def test_error_flood_closes_the_connection() -> None:
    d = driver()
    d.feed(b"BOGUS\r\n" * (proto.ServerProtocol.ERROR_LIMIT + 5))
    assert d.sent[-1] == replies.TOO_MANY_ERRORS
    assert d.closed == "too many protocol errors from the client"
    assert len(d.sent) == proto.ServerProtocol.ERROR_LIMIT + 1


def test_client_vanishing_mid_data_aborts_the_message() -> None:
    d = driver()
    session(d)
    d.feed(b"DATA\r\nSubject: x\r\n\r\nhalf a mess")
    d.feed(b"")  # end of file
    assert d.messages == [] and d.aborted == ["connection lost"]
    assert d.closed == "disconnected before QUIT"


def test_bdat_chunks_and_last() -> None:
    d = driver(chunking=True)
    session(d)
    assert d.feed(b"BDAT 5\r\nhel") == []
    assert d.feed(b"lo") == ["250 5 bytes received"]
    assert d.feed(b"BDAT 8 LAST\r\n\r\n.\r\nend") == ["250 message processed"]
    assert d.messages == [b"hello\r\n.\r\nend"]  # binary-clean: no unstuffing


def test_bdat_errors() -> None:
    d = driver(chunking=True)
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"BDAT x\r\n") == [replies.INVALID_ARGUMENT]
    assert d.feed(b"BDAT 0\r\n") == [replies.INVALID_ARGUMENT]
    # BDAT without a transaction: the chunk is consumed, then 503.
    assert d.feed(b"BDAT 4 LAST\r\nNOOP") == [replies.OUT_OF_SEQUENCE]
    assert d.feed(b"NOOP\r\n") == ["250 noop"]


def test_binarymime_needs_bdat() -> None:
    d = driver(chunking=True)
    d.feed(b"EHLO c\r\nMAIL FROM:<a@x> BODY=BINARYMIME\r\nRCPT TO:<b@x>\r\n")
    assert d.feed(b"DATA\r\n") == [replies.DATA_WITH_BINARYMIME]
    assert d.feed(b"RSET\r\n") == ["250 state reset"]


def test_rset_between_bdat_chunks_discards_the_message() -> None:
    d = driver(chunking=True)
    session(d)
    d.feed(b"BDAT 3\r\nabc")
    d.feed(b"RSET\r\n")
    assert d.aborted == ["reset"] and d.messages == []


def test_smtputf8_strictness() -> None:
    d = driver(smtputf8=True, smtputf8_strict=True)
    d.feed(b"EHLO c\r\n")
    assert d.feed("MAIL FROM:<jöran@x>\r\n".encode()) == [
        "553 mailbox name not allowed: invalid character in mailbox name: not using smptutf8"]
    assert d.feed("MAIL FROM:<jöran@x> SMTPUTF8\r\n".encode()) == ["250 sender <jöran@x> OK"]
    assert d.feed("RCPT TO:<åsa@exämple.se>\r\n".encode()) == [
        "250 recipient <åsa@exämple.se> OK"]
    t = d.protocol.transaction
    assert t.utf8_mailboxes and t.recipients[0].address == "åsa@xn--exmple-cua.se"


def test_eight_bit_content_is_recorded() -> None:
    d = driver()
    session(d)
    d.feed("DATA\r\nSubject: x\r\n\r\nGrüße\r\n.\r\n".encode())
    d.feed(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: y\r\n\r\nplain\r\n.\r\n")
    assert d.bodies == ["8BITMIME", ""]


def test_starttls_discards_pipelined_plaintext() -> None:
    d = driver(tls_available=True)
    d.feed(b"EHLO c\r\n")
    d.protocol.receive_data(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
    events = []
    while (ev := d.protocol.next_event()) is not proto.PAUSED:
        events.append(ev)
    assert isinstance(events[-1], proto.StartTls)
    d.protocol.tls_started()
    assert d.feed(b"MAIL FROM:<a@x>\r\n") == [replies.OUT_OF_SEQUENCE]  # EHLO first again
    assert d.protocol.secure


def test_disabled_server_refuses() -> None:
    d = driver(enabled=False)
    assert d.sent == ["421 service not available"]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_input_in_any_pieces_never_breaks_the_protocol(data: bytes, cuts: list[int]) -> None:
    d = driver(chunking=True, max_size=300)
    pos = 0
    for cut in cuts:
        d.feed(data[pos:pos + cut])
        pos += cut
    d.feed(data[pos:])
    d.feed(b"")
    assert d.closed is not None
    assert all(r[:3].isdigit() for r in d.sent)


@given(st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=20))
def test_stuffed_lines_come_back_unchanged(lines: list[bytes]) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                       for line in lines)
    d = driver()
    session(d)
    d.feed(b"DATA\r\n" + stuffed + b".\r\n")
    if any(b"\x00" in line for line in lines) or any(
            len(line) > 998 for line in lines):
        return
    assert d.messages == [body]


def test_vrfy_does_not_echo_a_bare_cr_or_lf_into_its_reply() -> None:
    # Found by fuzzing: "VRFY x<LF>250 fake" gave a reply that a client reading LF-ended
    # lines saw as two replies.
    d = driver()
    d.feed(b"EHLO c\r\n")
    assert d.feed(b"VRFY x\n250 fake\rline\r\n") == [
        "252 cannot verify but will accept: x\\x0a250 fake\\x0dline"]


def test_help_gives_a_214_reply_in_any_state_and_leaves_the_transaction_alone() -> None:
    d = driver()
    help_reply = ["214-commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
                  "214 end of help"]
    assert d.feed(b"HELP\r\n") == help_reply  # before EHLO
    session(d)
    assert d.feed(b"HELP MAIL\r\n") == help_reply  # with an argument, mid-transaction
    assert d.feed(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")[-1] == "250 message processed"
    assert d.messages == [b"Subject: x\r\n\r\nbody\r\n"]
    assert d.protocol.errors == 0  # HELP is no client error: it counts for nothing


def test_every_refused_command_is_noted_for_the_log() -> None:
    d = driver()
    d.feed(b"EHLO c\r\nBOGUS\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n")
    assert d.notices == ['smtp command refused with "500 command unrecognized"',
                         'smtp command refused with "503 command out of sequence -- use RSET '
                         'to resynchronise"']
