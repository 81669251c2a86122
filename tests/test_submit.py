"""emailrelay-submit: the program run end to end into a spool directory, and its parts."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emailrelay.options.table import BY_NAME
from emailrelay.spool import envelope as envelope_format
from emailrelay.submit.compose import content_lines
from emailrelay.submit.headers import HeaderSection, LineEndings, MessageError
from emailrelay.submit.options import parse
from tests.support.relay import free_port

SUBMIT = [sys.executable, "-m", "emailrelay.cli.submit"]
NAME = re.compile(r"emailrelay\.\d+\.\d+\.\d+\.content")


def run_submit(*args: str, stdin: bytes | None = b"", spool: Path | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    extra = ["--spool-dir", str(spool)] if spool is not None else []
    return subprocess.run([*SUBMIT, *extra, *args], input=stdin, capture_output=True,
                          timeout=timeout)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    return path


def messages(spool: Path) -> list[tuple[bytes, bytes]]:
    """(content, envelope) of each message, in submission order."""
    contents = sorted(spool.glob("emailrelay.*.content"),
                      key=lambda p: int(p.name.split(".")[3]))
    return [(c.read_bytes(), c.with_suffix(".envelope").read_bytes()) for c in contents]


def envelope_bytes(sender: str, recipients: list[str], *, body: str = "7bit",
                   auth: str = "", auth_in: str = "", auth_out: str = "",
                   utf8: str = "0") -> bytes:
    """What E-MailRelay 2.6 writes for a submitted message (Client 127.0.0.1)."""
    lines = [("Format", "#2821.8"), ("Content", body), ("From", sender),
             ("ToCount", str(len(recipients))),
             *(("To-Remote", r) for r in recipients),
             ("Authentication", auth), ("Client", "127.0.0.1"), ("ClientCertificate", ""),
             ("MailFromAuthIn", auth_in), ("MailFromAuthOut", auth_out), ("ForwardTo", ""),
             ("ForwardToAddress", ""), ("ClientAccountSelector", ""),
             ("Utf8MailboxNames", utf8), ("End", "1")]
    return "".join(f"X-MailRelay-{k}: {v}\r\n" for k, v in lines).encode()


def assert_nothing_written(spool: Path) -> None:
    assert sorted(p.name for p in spool.iterdir()) == []


MESSAGE = (b"From: Alice <alice@example.com>\n"
           b"To: bob@example.com, \"Carol X\" <carol@example.org>\n"
           b"Cc: dave@example.net\n"
           b"Subject: greetings\n"
           b"\n"
           b"Hello,\n"
           b"two lines.\n")


# -- end to end: what lands in the spool ------------------------------------------------------

def test_explicit_envelope_from_standard_input(spool: Path) -> None:
    result = run_submit("--from", "sender@example.com", "--to", "rcpt@example.com", "-v",
                        stdin=MESSAGE, spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, env)] = messages(spool)
    assert content == MESSAGE.replace(b"\n", b"\r\n")
    assert env == envelope_bytes("sender@example.com", ["rcpt@example.com"])
    path = Path(result.stdout.decode().strip())
    assert path.parent == spool and NAME.fullmatch(path.name)
    assert path.read_bytes() == content
    assert result.stderr == b""
    # The same modes and names as the SMTP server's messages, nothing left half-written.
    for p in spool.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    assert not list(spool.glob("*.new"))
    assert envelope_format.parse(env).recipients == ["rcpt@example.com"]


def test_envelope_from_the_headers_and_recipients_in_to_cc_bcc_order(spool: Path) -> None:
    text = MESSAGE.replace(b"Cc: dave@example.net\n", b"Bcc: Eve <eve@example.com>\n"
                           b"Cc: dave@example.net,\n frank@example.net\n")
    result = run_submit(stdin=text, spool=spool)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    [(content, env)] = messages(spool)
    assert env == envelope_bytes("alice@example.com", [
        "bob@example.com", "carol@example.org", "dave@example.net", "frank@example.net",
        "eve@example.com"])
    # Nobody sees the Bcc: field (RFC 5322 3.6.3); the folded Cc: stays as it was.
    assert b"Bcc" not in content and b"eve@" not in content
    assert content.startswith(b"From: Alice <alice@example.com>\r\nTo: bob@example.com, "
                              b"\"Carol X\" <carol@example.org>\r\nCc: dave@example.net,\r\n"
                              b" frank@example.net\r\nSubject: greetings\r\n\r\n")


@pytest.mark.parametrize(("headers", "sender"), [
    (b"From: a@example.com, b@example.com\nSender: s@example.com\n", "s@example.com"),
    (b"From: a@example.com, b@example.com\n", "a@example.com"),
    (b"Sender: s@example.com\n", "s@example.com"),
    (b"Subject: no author\n", "anonymous"),
    (b"FROM  : Upper <upper@example.com>\n", "upper@example.com"),
])
def test_sender_taken_from_from_or_sender(spool: Path, headers: bytes, sender: str) -> None:
    result = run_submit("--to", "r@example.com", stdin=headers + b"\nbody\n", spool=spool)
    assert result.returncode == 0, result.stderr
    [(_, env)] = messages(spool)
    assert env == envelope_bytes(sender, ["r@example.com"])


def test_recipients_from_to_option_commas_and_arguments(spool: Path) -> None:
    result = run_submit("--to", "a@example.com,b@example.com", "--to=c@example.com",
                        "d@example.com", "\\-e@example.com", "-f", "s@example.com",
                        stdin=b"Subject: x\n\n", spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, env)] = messages(spool)
    assert env == envelope_bytes("s@example.com", ["a@example.com", "b@example.com",
                                                   "c@example.com", "d@example.com",
                                                   "-e@example.com"])
    assert content == b"Subject: x\r\n\r\n"


def test_bcc_split_gives_one_message_per_bcc_recipient(spool: Path) -> None:
    text = (b"From: a@example.com\nTo: t@example.com\nBcc: \"Eve\" <eve@example.com>,\n"
            b"  frank@example.com\nSubject: s\n\nbody\n")
    result = run_submit("--bcc-split", "-n", stdin=text, spool=spool)
    assert result.returncode == 0, result.stderr
    names = result.stdout.decode().split()
    assert len(names) == 3 and all(NAME.fullmatch(n) for n in names)
    (c1, e1), (c2, e2), (c3, e3) = messages(spool)
    head = b"From: a@example.com\r\nTo: t@example.com\r\n"
    tail = b"Subject: s\r\n\r\nbody\r\n"
    assert (c1, e1) == (head + tail, envelope_bytes("a@example.com", ["t@example.com"]))
    assert (c2, e2) == (head + b"Bcc: \"Eve\" <eve@example.com>\r\n" + tail,
                        envelope_bytes("a@example.com", ["eve@example.com"]))
    assert (c3, e3) == (head + b"Bcc: frank@example.com\r\n" + tail,
                        envelope_bytes("a@example.com", ["frank@example.com"]))


def test_one_bcc_recipient_is_not_split(spool: Path) -> None:
    text = b"To: t@example.com\nBcc: b@example.com\n\nx\n"
    assert run_submit("-b", stdin=text, spool=spool).returncode == 0
    [(content, env)] = messages(spool)
    assert content == b"To: t@example.com\r\n\r\nx\r\n"
    assert env == envelope_bytes("anonymous", ["t@example.com", "b@example.com"])


def test_content_lines_and_header_flags_as_in_the_reference_example(spool: Path) -> None:
    # E-MailRelay's documented example: Subject "help", body "error".
    result = run_submit("-dtFN", "--to=user@localhost", "--content", "U3ViamVjdDogaGVscA",
                        "--content=", "--content=ZXJyb3I", stdin=b"ignored", spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, env)] = messages(spool)
    assert re.fullmatch(rb"To: user@localhost\r\nFrom: anonymous:;\r\n"
                        rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
                        rb"Subject: help\r\n\r\nerror\r\n", content), content
    assert env == envelope_bytes("anonymous", ["user@localhost"])


def test_body_from_an_input_file_after_command_line_headers(spool: Path,
                                                            tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes(b"Not: a header\r\nsecond line")
    result = run_submit("-tF", "--to=r@example.com", "--from=s@example.com",
                        "--content=U3ViamVjdDogaGVscA", "--content", "", "--body",
                        "--input-file", str(body), "-I", "example.com", stdin=None,
                        spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, _)] = messages(spool)
    assert re.fullmatch(rb"To: r@example.com\r\nFrom: s@example.com\r\n"
                        rb"Message-ID: <[^@>\s]+@example\.com>\r\nSubject: help\r\n\r\n"
                        rb"Not: a header\r\nsecond line\r\n", content), content


def test_existing_date_and_message_id_are_kept_and_from_to_replaced(spool: Path) -> None:
    text = (b"Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y>\nFrom: old@example.com\n"
            b"Sender: s@example.com\nTo: old@example.com\nCc: c@example.com\nSubject: s\n\n")
    result = run_submit("-d", "--content-message-id", "z", "-F", "-t", "-f", "new@example.com",
                        "new-rcpt@example.com", stdin=text, spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, env)] = messages(spool)
    assert content == (b"To: new-rcpt@example.com\r\nFrom: new@example.com\r\n"
                       b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n"
                       b"Subject: s\r\n\r\n")
    assert env == envelope_bytes("new@example.com", ["new-rcpt@example.com"])


def test_authentication_fields_of_the_envelope(spool: Path) -> None:
    result = run_submit("--auth", "joe", "--from-auth-in", "a b+c=d", "--from-auth-out", "",
                        "-f", "s@example.com", "r@example.com", stdin=b"Subject: x\n\n",
                        spool=spool)
    assert result.returncode == 0, result.stderr
    [(_, env)] = messages(spool)
    assert env == envelope_bytes("s@example.com", ["r@example.com"], auth="joe",
                                 auth_in="a+20b+2Bc+3Dd", auth_out="<>")


def test_eight_bit_content_utf8_mailboxes_and_idn_domains(spool: Path) -> None:
    text = "To: Jörg <jörg@bücher.example>\nSubject: grüße\n\nÄpfel\n".encode()
    result = run_submit("-f", "s@example.com", stdin=text, spool=spool)
    assert result.returncode == 0, result.stderr
    [(content, env)] = messages(spool)
    assert content == text.replace(b"\n", b"\r\n")
    assert env == envelope_bytes("s@example.com", ["jörg@xn--bcher-kva.example"],
                                 body="8bit", utf8="1")


def test_line_endings_are_made_crlf(spool: Path) -> None:
    text = b"Subject: x\r\n\r\na\rb\nc\r\n\r\rd"
    assert run_submit("r@example.com", stdin=text, spool=spool).returncode == 0
    [(content, _)] = messages(spool)
    assert content == b"Subject: x\r\n\r\na\r\nb\r\nc\r\n\r\n\r\nd\r\n"


def test_copy_into_mailbox_subdirectories(spool: Path) -> None:
    (spool / "alice").mkdir()
    (spool / "bob").mkdir()
    result = run_submit("--copy", "-n", "r@example.com", stdin=b"Subject: x\n\nhi\n",
                        spool=spool)
    assert result.returncode == 0, result.stderr
    name = result.stdout.decode().strip()
    envelope_name = name.replace(".content", ".envelope")
    assert (spool / name).read_bytes() == b"Subject: x\r\n\r\nhi\r\n"
    assert not (spool / envelope_name).exists()  # every mailbox has it: not forwarded
    expected = envelope_bytes("anonymous", ["r@example.com"])
    for box in ("alice", "bob"):
        assert (spool / box / envelope_name).read_bytes() == expected
        assert sorted(p.name for p in (spool / box).iterdir()) == [envelope_name]


def test_copy_without_subdirectories_leaves_the_message_to_be_forwarded(spool: Path) -> None:
    assert run_submit("-c", "r@example.com", stdin=b"Subject: x\n\n", spool=spool).returncode == 0
    assert len(messages(spool)) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_gives_the_files_to_the_spool_owner(spool: Path) -> None:
    os.chown(spool, 65534, 65534)
    assert run_submit("r@example.com", stdin=b"Subject: x\n\n", spool=spool).returncode == 0
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in spool.iterdir()}
    assert owners == {(65534, 65534)}


def test_a_terminal_ends_the_message_with_a_dot_line(spool: Path) -> None:
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen([*SUBMIT, "-s", str(spool), "-n", "r@example.com"],
                                   stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.write(master, b"Subject: typed\n\nline one\n.\n")
        _, err = process.communicate(timeout=20)
    finally:
        os.close(master)
        os.close(slave)
    assert process.returncode == 0, err
    [(content, _)] = messages(spool)
    assert content == b"Subject: typed\r\n\r\nline one\r\n"


@pytest.mark.slow
def test_a_large_body_is_streamed_not_held_in_memory(spool: Path, tmp_path: Path) -> None:
    def peak_rss_kib(size: int) -> int:
        source = tmp_path / f"in-{size}"
        with open(source, "wb") as f:
            f.write(b"Subject: big\n\n")
            line = b"x" * 99 + b"\n"
            for _ in range(size // 100):
                f.write(line)
        code = ("import resource, sys; from emailrelay.cli.submit import main; "
                f"rc = main(['-s', {str(spool)!r}, '-x', {str(source)!r}, 'r@example.com']); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    small = peak_rss_kib(1 << 20)
    large = peak_rss_kib(96 << 20)
    assert large - small < 16 * 1024, (small, large)
    sizes = sorted(p.stat().st_size for p in spool.glob("*.content"))
    assert sizes[-1] == len(b"Subject: big\r\n\r\n") + (96 << 20) // 100 * 101


# -- bad input: a clear error, exit 1, nothing written ----------------------------------------

@pytest.mark.parametrize(("args", "stdin", "error"), [
    ((), b"Subject: x\n\nno recipients\n", "no recipients"),
    (("-t",), b"Subject: x\n\n", "--content-to needs envelope recipients"),
    (("r@example.com",), b"Hello there,\nthis is not a header.\n",
     "not an RFC 5322 message: line 1 of standard input is not a header field (\"Name: "
     "value\"): \"Hello there,\" (use --body for input that has no headers)"),
    (("r@example.com",), b" folded\n\n", "line 1 of standard input is a folded "
     "continuation line"),
    (("r@example.com",), b"Subject: " + b"x" * 990 + b"\n\n", "line 1 of standard input is "
     "longer than 998 characters"),
    (("r@example.com",), b"Subject: s\nX: " + b"x" * 5000 + b"\n\n", "line 2 of standard "
     "input is longer than 998 characters"),
    (("r@example.com",), b"Subject: a\0b\n\n", "contains a NUL character"),
    (("r@example.com",), b"Subject: x\n\nbody\0with a NUL\n",
     "the body contains a NUL character"),
    (("r@example.com", "--body"), b"just a body\n", "there are no header fields"),
    (("r@example.com", "-N"), b"", "there are no header fields"),
    (("--content", "not*base64"), b"", "invalid base64 in --content value 1: \"not*base64\""),
    (("--content", "U3ViamVjd"), b"", "invalid base64 in --content value 1"),
    (("--content", "YQpi", "r@example.com"), b"", "--content value 1 decodes to more than "
     "one line"),
    ((), b"To: nobody\n\n", "invalid address in the To: header (header field 1): \"nobody\""),
    ((), b"To: a@\n\n", "invalid address in the To: header"),
    (("--to", "a b@example.com"), b"Subject: x\n\n",
     "invalid recipient address \"a b@example.com\": it contains a space"),
    (("-f", "@example.com", "r@example.com"), b"Subject: x\n\n",
     "invalid sender address \"@example.com\""),
])
def test_bad_input(spool: Path, args: tuple[str, ...], stdin: bytes, error: str) -> None:
    result = run_submit(*args, stdin=stdin, spool=spool)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("emailrelay-submit: "), result.stderr
    assert error in result.stderr.decode(), result.stderr
    assert result.stdout == b""
    assert_nothing_written(spool)


def test_unreadable_input_file(spool: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.eml"
    result = run_submit("-x", str(missing), "r@example.com", spool=spool)
    assert result.returncode == 1
    assert result.stderr.decode() == (f"emailrelay-submit: cannot open input file "
                                      f"\"{missing}\": No such file or directory\n")
    result = run_submit("-x", str(tmp_path), "r@example.com", spool=spool)
    assert result.returncode == 1 and "Is a directory" in result.stderr.decode()
    assert_nothing_written(spool)


def test_missing_spool_directory(tmp_path: Path) -> None:
    result = run_submit("r@example.com", stdin=b"Subject: x\n\n", spool=tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.decode() == (f"emailrelay-submit: spool directory "
                                      f"\"{tmp_path / 'nowhere'}\" does not exist\n")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(("args", "error"), [
    (("--bogus",), 'error: invalid option: "--bogus"'),
    (("-q",), 'error: invalid option: "-q"'),
    (("--from",), 'error: no value supplied for "--from"'),
    (("-f", "a@x", "-f", "b@x"), 'error: duplicate use of "--from"'),
    (("--body=maybe",), 'error: cannot give a value with "--body" (maybe)'),
])
def test_option_errors_exit_1(spool: Path, args: tuple[str, ...], error: str) -> None:
    # E-MailRelay 2.6 prints these but exits 0; a script should see the failure.
    result = run_submit(*args, stdin=b"Subject: x\n\n", spool=spool)
    assert result.returncode == 1
    assert result.stderr.decode().startswith(f"emailrelay-submit: {error}\n")
    assert_nothing_written(spool)


def test_help_and_version() -> None:
    result = run_submit("--version")
    assert (result.returncode, result.stdout) == (0, b"2.6\n")
    brief = run_submit("--help")
    assert brief.returncode == 0
    assert b"--spool-dir" in brief.stdout and b"--bcc-split" not in brief.stdout
    full = run_submit("--help", "-v").stdout.decode()
    for option in ("--to", "--content-to", "--content-from", "--bcc-split", "--content-date",
                   "--content-message-id", "--copy", "--filename", "--content", "--no-stdin",
                   "--body", "--auth", "--from-auth-in", "--from-auth-out", "--version"):
        assert option in full, option


# -- forwarding: what was submitted leaves through a running relay -----------------------------

@pytest.mark.skipif(bool(BY_NAME["forward-to"].pending or BY_NAME["poll"].pending),
                    reason="needs forwarding")
def test_a_running_relay_forwards_what_was_submitted(start_relay, spool: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    received = []

    class Capture(Sink):
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    capture = Controller(Capture(), hostname="127.0.0.1", port=port)
    capture.start()
    try:
        relay = start_relay("--forward-to", f"127.0.0.1:{port}", "--poll", "1", spool=spool)
        result = run_submit("-f", "s@example.com", "r1@example.com", "r2@example.com",
                            stdin=MESSAGE, spool=spool)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, relay.log()
        [env] = received
        assert env.mail_from == "s@example.com"
        assert env.rcpt_tos == ["r1@example.com", "r2@example.com"]
        assert env.content.replace(b"\r\n", b"\n").endswith(MESSAGE)
        deadline = time.monotonic() + 10
        while list(spool.glob("emailrelay.*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(spool.glob("emailrelay.*")), "forwarded messages leave the spool"
    finally:
        capture.stop()


# -- the parts ----------------------------------------------------------------------------------

def test_content_values_split_at_commas_and_end_headers_at_the_first_empty_one() -> None:
    args = parse(["--content", "U3ViamVjdDogYQ,,Ym9keQ", "--content", "=", "--content=Yg"])
    assert args.content_values() == ["U3ViamVjdDogYQ", "", "Ym9keQ", "=", "Yg"]
    assert content_lines(args.content_values()) == (["Subject: a"], ["body", "", "b"])


def test_header_section_fields_and_edits() -> None:
    h = HeaderSection()
    h.add_lines(["To: a@x,", "\tb@x", "Subject : s", "bcc: c@x", "BCC: d@x"], str)
    assert [f.name for f in h.fields] == ["To", "Subject", "bcc", "BCC"]
    assert h.find("to")[0].body == " a@x,\tb@x"
    assert h.replaced("Bcc", "Bcc: only@x").lines() == ["To: a@x,", "\tb@x", "Subject : s",
                                                         "Bcc: only@x"]
    assert h.without("bcc", "TO").lines() == ["Subject : s"]
    with pytest.raises(MessageError, match="not a header field"):
        h.add_lines(["no colon here"], str)


def test_line_endings_across_chunk_boundaries() -> None:
    endings = LineEndings()
    out = b"".join(endings.feed(chunk) for chunk in (b"a\r", b"\nb\r", b"c\n", b"d"))
    assert out + endings.finish() == b"a\r\nb\r\nc\r\nd\r\n"
    assert not endings.eight_bit
    with pytest.raises(MessageError, match="NUL"):
        LineEndings().feed(b"a\0")
