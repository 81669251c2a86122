"""The sans-I/O SMTP client: every reply code path, pipelining, extensions, slots."""

from __future__ import annotations

import base64

import pytest

from emailrelay.smtp import client as c

EHLO_FULL = ("250-relay.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
             "250-SMTPUTF8\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250 AUTH PLAIN LOGIN\r\n")
EHLO_PLAIN = "250 relay.example\r\n"


class Driver:
    """Feeds replies and records what the client sends and reports."""

    def __init__(self, config: c.ClientConfig | None = None) -> None:
        self.p = c.ClientProtocol(config or c.ClientConfig(ehlo_name="me.example"))
        self.sent: list[list[str]] = []
        self.events: list[object] = []

    def feed(self, text: str | bytes) -> None:
        self.p.receive_data(text.encode() if isinstance(text, str) else text)
        self.drain()

    def drain(self) -> None:
        while (event := self.p.next_event()) is not c.NEED_DATA:
            if isinstance(event, c.Send):
                self.sent.append(event.lines)
            else:
                self.events.append(event)

    def last_sent(self) -> list[str]:
        return self.sent[-1]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def outcome(self) -> c.Outcome:
        done = self.of(c.MessageDone)
        assert done, f"no outcome yet: {self.events}"
        return done[-1].outcome

    def connect(self, ehlo: str = EHLO_FULL) -> None:
        self.feed("220 relay.example ESMTP\r\n")
        assert self.last_sent() == ["EHLO me.example"]
        self.feed(ehlo)
        assert isinstance(self.events[-1], c.SessionReady)

    def send(self, **kw: object) -> None:
        defaults: dict[str, object] = {"mail_from": "a@x.example",
                                       "recipients": ["b@y.example"], "size": 10}
        defaults.update(kw)
        self.p.send_message(c.OutgoingMessage(**defaults))  # type: ignore[arg-type]
        self.drain()


def delivered_with_data(d: Driver) -> None:
    d.feed("354 go ahead\r\n")
    assert isinstance(d.events[-1], c.SendContent)
    assert d.p.encoder is not None
    d.p.content_sent()
    d.feed("250 2.0.0 queued as 1\r\n")


# -- replies ------------------------------------------------------------------------------------

def test_reply_parser_joins_multiline_replies() -> None:
    parser = c.ReplyParser()
    parser.feed(b"250-first\r\n250-second  line\r\n250 third\r\n")
    reply = parser.next_reply()
    assert reply == c.Reply(250, ("first", "second  line", "third"))
    assert reply.text == "first second line third"
    assert parser.next_reply() is None


def test_reply_parser_waits_for_the_rest_of_a_line() -> None:
    parser = c.ReplyParser()
    parser.feed(b"250 o")
    assert parser.next_reply() is None
    parser.feed(b"k\r\n")
    assert parser.next_reply() == c.Reply(250, ("ok",))


@pytest.mark.parametrize("bad", [b"25\r\n", b"abc ok\r\n", b"250x\r\n", b"650 no\r\n",
                                 b"250-a\r\n251 b\r\n"])
def test_reply_parser_rejects_invalid_lines(bad: bytes) -> None:
    parser = c.ReplyParser()
    parser.feed(bad)
    with pytest.raises(c.ClientError, match="invalid response"):
        while parser.next_reply() is None:
            pass


def test_reply_parser_refuses_endless_replies() -> None:
    parser = c.ReplyParser()
    parser.feed(b"250-" + b"x" * 1000 + b"\r\n")
    for _ in range(100):
        parser.feed(b"250-" + b"x" * 1000 + b"\r\n")
    with pytest.raises(c.ClientError, match="overflow"):
        parser.next_reply()
    parser = c.ReplyParser()
    parser.feed(b"2" * (c.REPLY_LINE_LIMIT + 1))
    with pytest.raises(c.ClientError, match="overflow"):
        parser.next_reply()


def test_invalid_reply_ends_the_session_and_defers_the_message() -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("hello there\r\n")
    assert d.outcome().result is c.Result.DEFERRED
    assert d.of(c.Closed)[-1].error == "invalid response"


# -- session set-up ---------------------------------------------------------------------------

def test_ehlo_extensions_are_parsed() -> None:
    d = Driver()
    d.connect()
    assert {"PIPELINING", "8BITMIME", "SIZE", "SMTPUTF8", "CHUNKING", "BINARYMIME",
            "AUTH"} <= d.p.extensions
    assert d.p.size_limit == 1000
    assert d.p.auth_mechanisms == ["PLAIN", "LOGIN"]


@pytest.mark.parametrize("code", [500, 501, 502])
def test_helo_fallback_when_ehlo_is_not_understood(code: int) -> None:
    d = Driver()
    d.feed("220 old server\r\n")
    d.feed(f"{code} what\r\n")
    assert d.last_sent() == ["HELO me.example"]
    d.feed("250 hello\r\n")
    assert isinstance(d.events[-1], c.SessionReady)
    assert d.p.extensions == frozenset()
    d.send()
    assert d.last_sent() == ["MAIL FROM:<a@x.example>"]


@pytest.mark.parametrize("greeting", ["421 busy, try later", "554 go away"])
def test_a_refusing_greeting_ends_the_session(greeting: str) -> None:
    d = Driver()
    d.feed(greeting + "\r\n")
    closed = d.of(c.Closed)
    assert closed and greeting in closed[0].error
    assert d.sent == []


def test_greeting_timeout_sends_ehlo_and_ignores_a_late_greeting() -> None:
    d = Driver()
    d.p.greeting_timeout(20)
    d.drain()
    assert d.last_sent() == ["EHLO me.example"]
    assert "no greeting from remote server after 20s: continuing" in d.of(
        c.ProtocolWarning)[0].text
    d.feed("220 late\r\n")
    d.feed(EHLO_PLAIN)
    assert isinstance(d.events[-1], c.SessionReady)


def test_unexpected_ehlo_reply_is_a_connection_error() -> None:
    d = Driver()
    d.feed("220 hi\r\n")
    d.feed("554 no\r\n")
    assert "unexpected response" in d.of(c.Closed)[0].error


def test_quit_waits_for_221() -> None:
    d = Driver()
    d.connect()
    d.p.quit()
    d.drain()
    assert d.last_sent() == ["QUIT"]
    d.feed("221 bye\r\n")
    assert d.of(c.Closed)[0].error is None


def test_eof_after_quit_is_clean() -> None:
    d = Driver()
    d.connect()
    d.p.quit()
    d.drain()
    d.p.receive_data(b"")
    d.drain()
    assert d.of(c.Closed)[0].error is None


# -- one message --------------------------------------------------------------------------------

def test_message_without_pipelining_goes_step_by_step() -> None:
    d = Driver()
    d.connect(EHLO_PLAIN)
    d.send(recipients=["b@y.example", "c@y.example"])
    assert d.last_sent() == ["MAIL FROM:<a@x.example>"]
    d.feed("250 ok\r\n")
    assert d.last_sent() == ["RCPT TO:<b@y.example>"]
    d.feed("250 ok\r\n")
    assert d.last_sent() == ["RCPT TO:<c@y.example>"]
    d.feed("250 ok\r\n")
    assert d.last_sent() == ["DATA"]
    delivered_with_data(d)
    assert d.outcome() == c.Outcome(c.Result.DELIVERED)
    assert isinstance(d.events[-1], c.SessionReady)


def test_pipelining_sends_mail_and_rcpts_in_one_write_but_not_data() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", pipelining=True))
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    assert d.last_sent() == ["MAIL FROM:<a@x.example> BODY=7BIT SIZE=10",
                             "RCPT TO:<b@y.example>", "RCPT TO:<c@y.example>"]
    d.feed("250 ok\r\n250 ok\r\n")
    assert d.last_sent()[0].startswith("MAIL")  # nothing more until the last reply
    d.feed("250 ok\r\n")
    assert d.last_sent() == ["DATA"]
    delivered_with_data(d)
    assert d.outcome().delivered


def test_pipelining_needs_the_server_to_offer_it() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", pipelining=True))
    d.connect("250-relay\r\n250 8BITMIME\r\n")
    d.send(recipients=["b@y.example", "c@y.example"])
    assert d.last_sent() == ["MAIL FROM:<a@x.example> BODY=7BIT"]


def test_pipelining_is_off_by_default_as_in_emailrelay() -> None:
    d = Driver()
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    assert len(d.last_sent()) == 1


def test_pipelined_mail_rejection_consumes_the_rcpt_replies() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", pipelining=True))
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    d.feed("550 5.7.1 sender refused\r\n503 no mail\r\n")
    assert not d.of(c.MessageDone)
    d.feed("503 no mail\r\n")
    out = d.outcome()
    assert (out.result, out.code, out.reason) == (c.Result.FAILED, 550, "5.7.1 sender refused")
    assert isinstance(d.events[-1], c.SessionReady)
    assert d.last_sent()[0].startswith("MAIL")  # no RSET: no transaction was open


@pytest.mark.parametrize("code,result", [(451, c.Result.DEFERRED), (550, c.Result.FAILED)])
def test_mail_rejection(code: int, result: c.Result) -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed(f"{code} 4.7.0 not now\r\n")
    out = d.outcome()
    assert (out.result, out.code, out.reason) == (result, code, "4.7.0 not now")
    assert d.last_sent()[0].startswith("MAIL")


@pytest.mark.parametrize("code,result", [(450, c.Result.DEFERRED), (550, c.Result.FAILED)])
def test_recipient_rejected_with_forward_to_all_resets(code: int, result: c.Result) -> None:
    d = Driver()
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    d.feed("250 ok\r\n250 ok\r\n")
    d.feed(f"{code} 5.1.1 no such user\r\n")
    assert d.last_sent() == ["RSET"]
    assert not d.of(c.MessageDone)
    d.feed("250 reset\r\n")
    out = d.outcome()
    assert out.result is result
    assert out.code == code
    assert out.reason == (f"one or more recipients rejected: <c@y.example> {code} 5.1.1 no "
                          "such user")
    assert isinstance(d.events[-1], c.SessionReady)


def test_any_permanent_rejection_fails_even_with_temporary_ones() -> None:
    d = Driver()
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    d.feed("250 ok\r\n450 later\r\n550 never\r\n250 reset\r\n")
    assert d.outcome().result is c.Result.FAILED
    assert d.outcome().code == 550


def test_forward_to_some_sends_to_the_accepted_and_reports_the_rest() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", must_accept_all_recipients=False))
    d.connect()
    d.send(recipients=["b@y.example", "c@y.example"])
    d.feed("250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n")
    assert d.last_sent() == ["DATA"]
    delivered_with_data(d)
    out = d.outcome()
    assert out.result is c.Result.DELIVERED
    assert [r.recipient for r in out.rejected] == ["b@y.example"]
    assert out.reason.startswith("one or more recipients rejected")
    assert out.code == 0


def test_forward_to_some_with_every_recipient_rejected() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", must_accept_all_recipients=False))
    d.connect()
    d.send(recipients=["b@y.example"])
    d.feed("250 ok\r\n550 5.1.1 unknown\r\n")
    assert d.last_sent() == ["RSET"]
    d.feed("250 ok\r\n")
    assert d.outcome().reason.startswith("all recipients rejected")
    assert d.outcome().result is c.Result.FAILED


@pytest.mark.parametrize("code,result", [(451, c.Result.DEFERRED), (554, c.Result.FAILED)])
def test_data_command_rejected(code: int, result: c.Result) -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("250 ok\r\n250 ok\r\n")
    d.feed(f"{code} no data for you\r\n")
    assert d.last_sent() == ["RSET"]
    d.feed("250 ok\r\n")
    assert (d.outcome().result, d.outcome().code) == (result, code)


@pytest.mark.parametrize("code,result", [(452, c.Result.DEFERRED), (552, c.Result.FAILED)])
def test_end_of_data_rejected(code: int, result: c.Result) -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("250 ok\r\n250 ok\r\n")
    d.feed("354 go\r\n")
    d.p.content_sent()
    d.feed(f"{code}-5.3.4 too big\r\n{code} really\r\n")
    out = d.outcome()
    assert (out.result, out.code, out.reason) == (result, code, "5.3.4 too big really")
    assert d.last_sent() == ["DATA"]  # no RSET after the end of the data


def test_421_mid_transaction_defers_and_closes() -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("250 ok\r\n421 4.3.2 shutting down\r\n")
    assert d.outcome().result is c.Result.DEFERRED
    assert "shutting down" in d.of(c.Closed)[0].error


def test_connection_lost_mid_data_defers() -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("250 ok\r\n250 ok\r\n354 go\r\n")
    d.p.connection_lost("response timeout after 60s")
    d.drain()
    assert d.outcome() == c.Outcome(c.Result.DEFERRED, "response timeout after 60s")
    assert d.of(c.Closed)[0].error == "response timeout after 60s"


def test_eof_from_the_server_defers() -> None:
    d = Driver()
    d.connect()
    d.send()
    d.p.receive_data(b"")
    d.drain()
    assert d.outcome().result is c.Result.DEFERRED
    assert "closed" in d.outcome().reason


def test_unexpected_reply_to_data_is_a_connection_error() -> None:
    d = Driver()
    d.connect()
    d.send()
    d.feed("250 ok\r\n250 ok\r\n250 what\r\n")
    assert d.outcome().result is c.Result.DEFERRED
    assert "unexpected response" in d.of(c.Closed)[0].error


def test_many_messages_on_one_connection_without_rset() -> None:
    d = Driver()
    d.connect()
    for _ in range(3):
        d.send()
        d.feed("250 ok\r\n250 ok\r\n")
        delivered_with_data(d)
    assert len(d.of(c.MessageDone)) == 3
    assert ["RSET"] not in d.sent
    assert sum(1 for lines in d.sent if lines[0].startswith("MAIL")) == 3


# -- MAIL parameters and strictness ---------------------------------------------------------------

@pytest.mark.parametrize("body,ehlo,expected", [
    ("7bit", EHLO_FULL, " BODY=7BIT SMTPUTF8 SIZE=10"),
    ("8bit", EHLO_FULL, " BODY=8BITMIME SMTPUTF8 SIZE=10"),
    ("binarymime", EHLO_FULL, " BODY=BINARYMIME SMTPUTF8 SIZE=10"),
    ("7bit", EHLO_PLAIN, ""),
    ("unknown", EHLO_FULL, " SMTPUTF8 SIZE=10"),
])
def test_mail_from_parameters(body: str, ehlo: str, expected: str) -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", smtputf8_strict=False,
                              binarymime_strict=False))
    d.connect(ehlo)
    d.send(body_type=body, utf8_mailboxes=True)
    assert d.sent[-1][0] == "MAIL FROM:<a@x.example>" + expected


@pytest.mark.parametrize("body,utf8,config,reason", [
    ("8bit", False, {"eightbit_strict": True}, "cannot send 8-bit message to 7-bit server"),
    ("binarymime", False, {}, "cannot send binarymime message to a non-chunking server"),
    ("7bit", True, {}, "cannot send utf8 message to non-smtputf8 server"),
])
def test_strict_checks_fail_the_message_before_mail(body: str, utf8: bool, config: dict,
                                                   reason: str) -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", **config))
    d.connect(EHLO_PLAIN)
    d.send(body_type=body, utf8_mailboxes=utf8)
    assert d.outcome() == c.Outcome(c.Result.FAILED, reason, 0)
    assert d.sent == [["EHLO me.example"]]
    assert isinstance(d.events[-1], c.SessionReady)


@pytest.mark.parametrize("body,utf8,config,warning", [
    ("8bit", False, {}, "eight-bit message to a server that has not advertised the 8BITMIME"),
    ("binarymime", False, {"binarymime_strict": False}, "BINARYMIME/CHUNKING"),
    ("7bit", True, {"smtputf8_strict": False}, "utf8 mailbox names"),
])
def test_lax_checks_warn_once_per_connection_and_send(body: str, utf8: bool, config: dict,
                                                      warning: str) -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", **config))
    d.connect(EHLO_PLAIN)
    for _ in range(2):
        d.send(body_type=body, utf8_mailboxes=utf8)
        assert d.last_sent() == ["MAIL FROM:<a@x.example>"]
        d.feed("250 ok\r\n250 ok\r\n")
        assert d.last_sent() == ["DATA"]  # binarymime falls back to DATA
        delivered_with_data(d)
    warnings = [e.text for e in d.of(c.ProtocolWarning)]
    assert len(warnings) == 1 and warning in warnings[0]


# -- BDAT ---------------------------------------------------------------------------------

def test_binarymime_goes_in_one_bdat_last_when_small() -> None:
    d = Driver()
    d.connect()
    d.send(body_type="binarymime", size=100)
    d.feed("250 ok\r\n250 ok\r\n")
    assert d.last_sent() == ["BDAT 100 LAST"]
    assert d.events[-1] == c.SendChunk(0, 100)
    d.feed("250 2.0.0 ok\r\n")
    assert d.outcome().delivered


def test_binarymime_in_several_chunks_each_waiting_for_a_reply() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", bdat_chunk_size=100))
    d.connect()
    d.send(body_type="binarymime", size=250)
    d.feed("250 ok\r\n250 ok\r\n")
    assert d.last_sent() == ["BDAT 100"]
    d.feed("250 100 octets\r\n")
    assert d.last_sent() == ["BDAT 100"]
    assert d.events[-1] == c.SendChunk(100, 100)
    d.feed("250 100 octets\r\n")
    assert d.last_sent() == ["BDAT 50 LAST"]
    d.feed("250 done\r\n")
    assert d.outcome().delivered


def test_a_rejected_middle_chunk_resets() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", bdat_chunk_size=100))
    d.connect()
    d.send(body_type="binarymime", size=250)
    d.feed("250 ok\r\n250 ok\r\n552 too much\r\n")
    assert d.last_sent() == ["RSET"]
    d.feed("250 ok\r\n")
    assert (d.outcome().result, d.outcome().code) == (c.Result.FAILED, 552)


def test_an_empty_binarymime_message_is_bdat_0_last() -> None:
    d = Driver()
    d.connect()
    d.send(body_type="binarymime", size=0)
    d.feed("250 ok\r\n250 ok\r\n")
    assert d.last_sent() == ["BDAT 0 LAST"]


# -- slots: STARTTLS and AUTH ----------------------------------------------------------------------

def test_starttls_then_ehlo_again() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", tls=c.TlsPolicy.IF_OFFERED))
    d.feed("220 hi\r\n250-relay\r\n250 STARTTLS\r\n")
    assert d.last_sent() == ["STARTTLS"]
    d.feed("220 go ahead\r\n")
    assert isinstance(d.events[-1], c.StartTls)
    d.p.tls_started()
    d.drain()
    assert d.last_sent() == ["EHLO me.example"] and d.p.secure
    d.feed("250-relay\r\n250 8BITMIME\r\n")
    assert isinstance(d.events[-1], c.SessionReady)


def test_replies_sent_in_plaintext_after_the_starttls_go_ahead_are_dropped() -> None:
    # A man in the middle appends a reply to the 220: it must never count as a reply
    # given under TLS (the client-side STARTTLS injection).
    d = Driver(c.ClientConfig(ehlo_name="me.example", tls=c.TlsPolicy.IF_OFFERED))
    d.feed("220 hi\r\n250-relay\r\n250 STARTTLS\r\n")
    d.feed("220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n")
    assert isinstance(d.events[-1], c.StartTls)
    assert [w.text for w in d.of(c.ProtocolWarning)] == [
        "ignoring data the server sent after its starttls response"]
    d.p.tls_started()
    d.drain()
    assert d.last_sent() == ["EHLO me.example"] and not d.of(c.Closed)
    d.feed("250-relay\r\n250 8BITMIME\r\n")
    assert isinstance(d.events[-1], c.SessionReady)
    assert d.p.extensions == frozenset({"8BITMIME"})


def test_starttls_if_offered_goes_on_without_it() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", tls=c.TlsPolicy.IF_OFFERED))
    d.connect(EHLO_PLAIN)


def test_starttls_required_but_not_offered() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", tls=c.TlsPolicy.REQUIRED))
    d.feed("220 hi\r\n" + EHLO_PLAIN)
    assert d.of(c.Closed)[0].error == "tls is mandated but the server cannot do starttls"


class PlainAuth:
    user = "user name"

    def choose(self, offered: list[str], secure: bool) -> str | None:
        return "PLAIN" if "PLAIN" in offered else None

    def initial(self, mechanism: str) -> str | None:
        return None

    def respond(self, mechanism: str, challenge: bytes) -> str:
        return base64.b64encode(b"\0user\0secret").decode()


def test_auth_slot_with_a_challenge() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", authenticator=PlainAuth()))
    d.feed("220 hi\r\n" + EHLO_FULL)
    assert d.last_sent() == ["AUTH PLAIN"]
    d.feed("334 \r\n")
    assert d.last_sent() == [base64.b64encode(b"\0user\0secret").decode()]
    d.feed("235 ok\r\n")
    assert d.p.authenticated and isinstance(d.events[-1], c.SessionReady)
    d.send()
    assert d.last_sent()[0].endswith(" AUTH=user+20name")


def test_auth_failure_and_missing_auth() -> None:
    d = Driver(c.ClientConfig(ehlo_name="me.example", authenticator=PlainAuth()))
    d.feed("220 hi\r\n" + EHLO_FULL + "334 \r\n535 no\r\n")
    assert d.of(c.Closed)[0].error == (
        "authentication failed using mechanism [plain]: [no]")
    d = Driver(c.ClientConfig(ehlo_name="me.example", authenticator=PlainAuth()))
    d.feed("220 hi\r\n" + EHLO_PLAIN)
    assert "authentication is not supported" in d.of(c.Closed)[0].error


# -- the DATA encoder ------------------------------------------------------------------------------

@pytest.mark.parametrize("content,expected", [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"no newline", b"no newline\r\n.\r\n"),
    (b".dot\r\n", b"..dot\r\n.\r\n"),
    (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"bare\nlf\rcr\r\n", b"bare\r\nlf\r\ncr\r\n.\r\n"),
    (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"ends with cr\r", b"ends with cr\r\n.\r\n"),
])
def test_data_encoder(content: bytes, expected: bytes) -> None:
    enc = c.DataEncoder()
    assert enc.encode(content) + enc.finish() == expected


def test_data_encoder_across_buffer_boundaries() -> None:
    enc = c.DataEncoder()
    out = enc.encode(b"a\r") + enc.encode(b"\n.b\r") + enc.encode(b"x") + enc.encode(b"\r\n")
    assert out + enc.finish() == b"a\r\n..b\r\nx\r\n.\r\n"
    assert enc.lines == 3


def test_an_unsolicited_reply_read_with_the_ehlo_reply_withdraws_session_ready() -> None:
    # Found by fuzzing: the adapter would call send_message() on a closed session.
    d = Driver()
    d.feed("220 relay.example ESMTP\r\n")
    d.feed(EHLO_PLAIN + "500 unsolicited\r\n")
    assert not d.of(c.SessionReady)
    assert [e.error for e in d.of(c.Closed)] == ["unexpected response: 500 unsolicited"]


def test_control_characters_in_a_reply_are_escaped() -> None:
    # Found by fuzzing: a bare CR stayed in the reply text that goes to logs and envelopes.
    parser = c.ReplyParser()
    parser.feed(b"550 no\rsuch\x1b[31m user\r\n")
    reply = parser.next_reply()
    assert reply is not None and reply.lines == ("no\\x0dsuch\\x1b[31m user",)


def test_a_close_read_with_the_354_withdraws_send_content() -> None:
    # Found by fuzzing: the adapter would call content_sent() on a closed session.
    d = Driver()
    d.connect(EHLO_PLAIN)
    d.send()
    d.feed("250 ok\r\n")
    d.feed("250 ok\r\n")
    d.feed("354 go\r\n421 4.3.0 bye\r\n")
    assert not d.of(c.SendContent)
    assert d.outcome().result is c.Result.DEFERRED
