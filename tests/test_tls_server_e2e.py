"""The real program's TLS server side (SMTP STARTTLS, SMTPS, POP3 STLS and POP3S) with
real peers: smtplib, poplib, openssl s_client, swaks and curl."""

from __future__ import annotations

import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from emailrelay.spool.envelope import Envelope, parse
from tests.support.certs import Pki, der_of
from tests.support.relay import Relay, free_port

needs = {name: pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")
         for name in ("openssl", "swaks", "curl")}

MESSAGE = "From: a@example.com\r\nSubject: over tls\r\n\r\nsecret stuff\r\n"
RECEIVED_TLS = re.compile(rb"^Received: from \S+ \(\[127\.0\.0\.1\]\) by \S+ with ESMTPS tls "
                          rb"(TLS_[A-Z0-9_]+) \(TLSv1\.3\) ; ", re.M)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def tls_relay(start_relay, pki: Pki, *args: str, mode: str = "--server-tls") -> Relay:  # type: ignore[no-untyped-def]
    return start_relay(mode, "--server-tls-certificate", str(pki.pem()), *args)


def stored(relay: Relay, count: int = 1) -> list[bytes]:
    deadline = time.monotonic() + 10
    while len(relay.envelopes()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(relay.envelopes()) == count, relay.log()
    return [p.read_bytes() for p in relay.contents()]


def envelope_of(relay: Relay) -> Envelope:
    return parse(relay.envelopes()[0].read_bytes())


def starttls(port: int, context: ssl.SSLContext) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
    smtp.ehlo("client.example")
    smtp.starttls(context=context)
    return smtp


# -- SMTP: STARTTLS --------------------------------------------------------------------------


def test_smtplib_starttls_stores_the_message_with_a_tls_received_line(start_relay,
                                                                     pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        code, text = smtp.ehlo("client.example")
        assert b"STARTTLS" in text
        assert smtp.starttls(context=pki.client_context())[0] == 220
        code, text = smtp.ehlo("client.example")
        assert code == 250 and b"STARTTLS" not in text  # offered only before TLS
        cipher = smtp.sock.cipher()[0]
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    content = stored(relay)[0]
    match = RECEIVED_TLS.search(content)
    assert match and match.group(1).decode() == cipher.replace("-", "_"), content
    log = relay.wait_for_log("smtp connection closed")
    assert re.search(r"info: tls protocol established with 127\.0\.0\.1:\d+ protocol "
                     rf"TLSv1\.3 cipher {cipher}\n", log), log
    envelope = envelope_of(relay)
    assert envelope.client_certificate == ""  # no --server-tls-verify: none asked for


def test_key_and_full_chain_in_two_files(start_relay, pki: Pki) -> None:
    intermediate = pki.ca.create_child_ca()
    key, chain = Pki.key_and_chain(pki, intermediate.issue_cert("localhost", "127.0.0.1"))
    relay = start_relay("--server-tls", "--server-tls-certificate", str(key),
                        "--server-tls-certificate", str(chain))
    # The client trusts only the root: the server must send the intermediate.
    with starttls(relay.port, pki.client_context()) as smtp:
        assert smtp.noop()[0] == 250


def test_starttls_twice_and_starttls_without_server_tls(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    with starttls(relay.port, pki.client_context()) as smtp:
        assert smtp.docmd("STARTTLS")[0] == 503
    plain = start_relay(name="plain")
    with smtplib.SMTP("127.0.0.1", plain.port, timeout=10) as smtp:
        assert b"STARTTLS" not in smtp.ehlo("x")[1]
        assert smtp.docmd("STARTTLS") == (500, b"command unrecognized")


@needs["openssl"]
def test_openssl_s_client_starttls_smtp(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{relay.port}",
         "-CAfile", str(pki.ca_file), "-verify_return_error", "-verify_hostname", "localhost",
         "-crlf", "-brief", "-ign_eof"],
        input="EHLO s-client.example\nMAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\n"
              "DATA\nSubject: s_client\n\nhello\n.\nQUIT\n",
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stderr and "Protocol version: TLSv1.3" in result.stderr
    assert "250 message processed" in result.stdout and "221 OK" in result.stdout
    assert RECEIVED_TLS.search(stored(relay)[0])


@needs["swaks"]
def test_swaks_tls(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--to", "b@example.com", "--tls",
         "--tls-verify", "--tls-ca-path", str(pki.ca_file), "--tls-sni", "localhost"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS started with cipher TLSv1.3" in result.stdout
    assert RECEIVED_TLS.search(stored(relay)[0])


def test_server_tls_required(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-required")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.ehlo("x")
        assert smtp.docmd("MAIL FROM:<a@example.com>") == (
            530, b"encryption required: use starttls")
        assert smtp.docmd("VRFY b@example.com")[0] == 530
        smtp.starttls(context=pki.client_context())
        smtp.ehlo("x")
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert len(stored(relay)) == 1


@needs["swaks"]
def test_swaks_without_tls_gets_nowhere_when_tls_is_required(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-required")
    result = subprocess.run(["swaks", "--server", f"127.0.0.1:{relay.port}", "--to",
                             "b@example.com"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "530 encryption required: use starttls" in result.stdout
    assert relay.envelopes() == [] and relay.contents() == []


@needs["curl"]
def test_curl_smtp_with_ssl_reqd_uses_starttls(start_relay, pki: Pki, tmp_path: Path) -> None:
    relay = tls_relay(start_relay, pki)
    message = tmp_path / "message.txt"
    message.write_text(MESSAGE)
    result = subprocess.run(
        ["curl", "-sS", f"smtp://127.0.0.1:{relay.port}", "--ssl-reqd", "--cacert",
         str(pki.ca_file), "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com",
         "--upload-file", str(message)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert RECEIVED_TLS.search(stored(relay)[0])


# -- SMTP: implicit TLS (SMTPS) -----------------------------------------------------------------


def test_implicit_tls_greets_only_after_the_handshake(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-required", mode="--server-tls-connection")
    with smtplib.SMTP_SSL("127.0.0.1", relay.port, timeout=10,
                          context=pki.client_context()) as smtp:
        _code, text = smtp.ehlo("x")
        assert b"STARTTLS" not in text
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert RECEIVED_TLS.search(stored(relay)[0])
    assert "tls protocol established with 127.0.0.1:" in relay.log()


@needs["swaks"]
def test_swaks_tls_on_connect(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, mode="--server-tls-connection")
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{relay.port}", "--to", "b@example.com", "--tlsc",
         "--tls-verify", "--tls-ca-path", str(pki.ca_file), "--tls-sni", "localhost"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert RECEIVED_TLS.search(stored(relay)[0])


@needs["curl"]
def test_curl_smtps(start_relay, pki: Pki, tmp_path: Path) -> None:
    relay = tls_relay(start_relay, pki, mode="--server-tls-connection")
    message = tmp_path / "message.txt"
    message.write_text(MESSAGE)
    result = subprocess.run(
        ["curl", "-sS", f"smtps://127.0.0.1:{relay.port}", "--cacert", str(pki.ca_file),
         "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com",
         "--upload-file", str(message)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert RECEIVED_TLS.search(stored(relay)[0])


@needs["openssl"]
def test_openssl_s_client_implicit(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, mode="--server-tls-connection")
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{relay.port}", "-CAfile",
         str(pki.ca_file), "-verify_return_error", "-crlf", "-brief", "-ign_eof"],
        input="QUIT\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^220 .* -- E-MailRelay V2\.6 -- Service ready$", result.stdout, re.M)
    assert "221 OK" in result.stdout


def test_plaintext_client_on_the_smtps_port_fails_the_handshake(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, mode="--server-tls-connection")
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(b"EHLO plaintext.example\r\n")
        assert sock.recv(100) == b""  # closed without a word
    log = relay.wait_for_log("failed: wrong version number")
    assert re.search(r"warning: tls handshake with 127\.0\.0\.1:\d+ failed: wrong version "
                     r"number\n.*info: smtp connection closed: tls handshake failed: 127\.0\.0\.1:",
                     log), log


def client_hello(context: ssl.SSLContext) -> bytes:
    """The first bytes a TLS client sends."""
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_tls_client_on_a_plain_port_gets_e_mailrelays_hint(start_relay, pki: Pki) -> None:
    relay = start_relay()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.recv(200)  # the greeting
        sock.sendall(client_hello(pki.client_context()))
        relay.wait_for_log("warning: received unexpected tls handshake packet from remote "
                           "client: try enabling implicit tls (smtps)")


# -- STARTTLS failures -------------------------------------------------------------------------


class RawSmtp:
    """A hand-driven SMTP connection that can start TLS on its own socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.greeting = self.reply()

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    raise EOFError(b"".join(lines) + self.buffer)
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start_tls(self, context: ssl.SSLContext) -> None:
        assert self.buffer == b""
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


def test_plaintext_pipelined_behind_starttls_is_discarded(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    smtp = RawSmtp(relay.port)
    # One packet: STARTTLS and a transaction a man in the middle slipped in behind it.
    smtp.send(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@example.com>\r\n"
              b"RCPT TO:<victim@example.com>\r\n")
    assert smtp.reply()[0].startswith(b"250-")
    assert smtp.reply() == [b"220 ready to start tls"]
    smtp.start_tls(pki.client_context())
    smtp.send(b"RCPT TO:<victim@example.com>\r\n")  # no MAIL counts
    assert smtp.reply() == [b"503 command out of sequence -- use RSET to resynchronise"]
    smtp.send(b"EHLO x\r\nMAIL FROM:<a@example.com>\r\n")
    assert smtp.reply()[-1] == b"250 8BITMIME" and smtp.reply()[0].startswith(b"250 sender")
    smtp.close()
    log = relay.wait_for_log("smtp connection closed")
    assert "evil" not in log and "victim" not in log.split("tls protocol established")[0]


def test_injection_that_overflows_the_first_read_never_takes_effect(start_relay,
                                                                    pki: Pki) -> None:
    # More than one read's worth of plaintext: part of it waits in the stream buffer or
    # the socket.  Either the handshake fails on it or it is dropped with the old reader;
    # it is never read as a command under TLS.
    relay = tls_relay(start_relay, pki)
    smtp = RawSmtp(relay.port)
    smtp.send(b"EHLO x\r\nSTARTTLS\r\n" + b"NOOP\r\n" * 40000
              + b"MAIL FROM:<evil@example.com>\r\n")
    smtp.reply()
    assert smtp.reply() == [b"220 ready to start tls"]
    try:
        smtp.start_tls(pki.client_context())
        smtp.send(b"RCPT TO:<victim@example.com>\r\n")
        assert smtp.reply()[0].startswith(b"503 ")
    except (ssl.SSLError, OSError, EOFError):
        relay.wait_for_log("smtp connection closed: tls handshake failed")
    smtp.close()
    assert "evil@example.com" not in relay.log()


def test_client_dropping_the_handshake(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki)
    smtp = RawSmtp(relay.port)
    smtp.send(b"EHLO x\r\nSTARTTLS\r\n")
    smtp.reply()
    assert smtp.reply() == [b"220 ready to start tls"]
    smtp.close()
    log = relay.wait_for_log("smtp connection closed: tls handshake failed")
    assert re.search(r"warning: tls handshake with 127\.0\.0\.1:\d+ failed: the connection was "
                     r"closed during the handshake", log), log
    with starttls(relay.port, pki.client_context()) as smtp2:  # the server carries on
        smtp2.ehlo("x")
        smtp2.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert len(stored(relay)) == 1


def test_an_untrusting_client_aborts_and_the_server_says_so(start_relay, pki: Pki,
                                                            tmp_path: Path) -> None:
    relay = tls_relay(start_relay, pki)
    stranger = Pki(tmp_path, "stranger")
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.ehlo("x")
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=stranger.client_context())
    log = relay.wait_for_log("smtp connection closed: tls handshake failed")
    assert re.search(r"failed: tlsv1 alert unknown ca", log), log


# -- client certificates (--server-tls-verify) ----------------------------------------------


def test_a_verified_client_certificate_goes_into_the_envelope(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-verify", str(pki.ca_file))
    client = pki.issue("client.example", common_name="client.example")
    with starttls(relay.port, pki.client_context(client)) as smtp:
        smtp.ehlo("x")
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    stored(relay)
    envelope_text = relay.envelopes()[0].read_bytes()
    assert b"X-MailRelay-ClientCertificate: -----BEGIN CERTIFICATE-----\r\n " in envelope_text
    envelope = envelope_of(relay)
    assert ssl.PEM_cert_to_DER_cert(envelope.client_certificate) == der_of(client)


def test_client_certificate_missing_when_verification_is_on(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-verify", str(pki.ca_file))
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)), \
            starttls(relay.port, pki.client_context()) as smtp:
        smtp.ehlo("x")
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    log = relay.wait_for_log("smtp connection closed: tls handshake failed")
    assert re.search(r"warning: tls handshake with 127\.0\.0\.1:\d+ failed: peer did not "
                     r"return a certificate", log), log
    assert relay.envelopes() == [] and relay.contents() == []


def assert_a_stranger_is_refused(relay: Relay, pki: Pki, tmp_path: Path) -> None:
    """A client certificate from a CA the relay does not trust fails the handshake."""
    stranger = Pki(tmp_path, "stranger").issue("client.example")
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)), \
            starttls(relay.port, pki.client_context(stranger)) as smtp:
        smtp.ehlo("x")
        smtp.noop()
    log = relay.wait_for_log("smtp connection closed: tls handshake failed")
    assert "failed: certificate verify failed: unable to get local issuer certificate" in log


def test_client_certificate_from_another_ca_is_refused(start_relay, pki: Pki,
                                                       tmp_path: Path) -> None:
    relay = tls_relay(start_relay, pki, "--server-tls-verify", str(pki.ca_file))
    assert_a_stranger_is_refused(relay, pki, tmp_path)



@needs["openssl"]
def test_client_certificate_verified_against_a_hashed_ca_directory(start_relay, pki: Pki,
                                                                   tmp_path: Path) -> None:
    """``--server-tls-verify <dir>``: a directory hashed with ``openssl rehash`` verifies the
    client's certificate in a real handshake and the message is stored with it."""
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / "test-ca.pem").write_bytes(pki.ca_file.read_bytes())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, timeout=30)
    relay = tls_relay(start_relay, pki, "--server-tls-verify", str(directory))
    client = pki.issue("client.example", common_name="client.example")
    with starttls(relay.port, pki.client_context(client)) as smtp:
        smtp.ehlo("x")
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    stored(relay)
    assert ssl.PEM_cert_to_DER_cert(envelope_of(relay).client_certificate) == der_of(client)
    # A certificate from a CA the directory does not hold is refused.
    assert_a_stranger_is_refused(relay, pki, tmp_path)

# -- --tls-config ------------------------------------------------------------------------------


def test_tls_config_maximum_version(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--tls-config", "-tlsv1.2")
    with starttls(relay.port, pki.client_context()) as smtp:
        assert smtp.sock.version() == "TLSv1.2"
        smtp.ehlo("x")
        smtp.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    content = stored(relay)[0]
    assert re.search(rb"with ESMTPS tls ECDHE_ECDSA_[A-Z0-9_]+ \(TLSv1\.2\) ; ", content), content
    assert "protocol TLSv1.2 cipher ECDHE-ECDSA-" in relay.log()


def test_tls_config_minimum_version(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--tls-config", "tlsv1.3")
    old = pki.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as smtp:
        smtp.ehlo("x")
        with pytest.raises(ssl.SSLError):
            smtp.starttls(context=old)
    assert "failed: unsupported protocol" in relay.wait_for_log("tls handshake failed")


def test_tls_config_can_let_old_devices_in(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--tls-config", "tlsv1.0")
    old = pki.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with starttls(relay.port, old) as smtp:
        assert smtp.sock.version() == "TLSv1"
    assert "protocol TLSv1.0 cipher " in relay.wait_for_log("smtp connection closed")


def test_tls_config_notes_on_stderr(start_relay, pki: Pki) -> None:
    relay = tls_relay(start_relay, pki, "--tls-config", "mbedtls,frobnicate")
    log = relay.log()
    assert ("emailrelay: warning: tls-config: mbedtls ignored: this program always uses "
            "OpenSSL through Python's ssl module") in log
    assert "emailrelay: warning: tls-config: tls configuration items ignored: [frobnicate]" in log


# -- POP3: STLS and POP3S ---------------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path) -> Path:
    path = tmp_path / "pop.auth"
    path.write_text("server plain alice secret\n")
    path.chmod(0o600)
    return path


def pop_relay(start_relay, pki: Pki, accounts: Path, *args: str,  # type: ignore[no-untyped-def]
              mode: str = "--server-tls") -> tuple[Relay, int]:
    pop_port = free_port()
    relay = tls_relay(start_relay, pki, "--pop", "--pop-port", str(pop_port), "--pop-auth",
                      str(accounts), *args, mode=mode)
    return relay, pop_port


def put_message(relay: Relay, pki: Pki, implicit: bool = False) -> None:
    if implicit:
        with smtplib.SMTP_SSL("127.0.0.1", relay.port, timeout=10,
                              context=pki.client_context()) as smtp:
            smtp.sendmail("a@example.com", ["alice@example.com"], MESSAGE)
    else:
        with starttls(relay.port, pki.client_context()) as smtp:
            smtp.ehlo("x")
            smtp.sendmail("a@example.com", ["alice@example.com"], MESSAGE)


def test_poplib_stls(start_relay, pki: Pki, accounts: Path) -> None:
    relay, pop_port = pop_relay(start_relay, pki, accounts)
    put_message(relay, pki)
    pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
    assert "STLS" in pop.capa()
    assert pop.stls(context=pki.client_context()).startswith(b"+OK")
    assert "STLS" not in pop.capa()
    pop.user("alice")
    pop.pass_("secret")
    assert pop.stat()[0] == 1
    assert b"secret stuff" in b"\n".join(pop.retr(1)[1])
    pop.quit()
    assert re.search(r"tls protocol established with 127\.0\.0\.1:\d+ protocol TLSv1\.3",
                     relay.log().split("pop connection from")[1])


def test_pop_login_only_after_stls_when_tls_is_required(start_relay, pki: Pki,
                                                          accounts: Path) -> None:
    _relay, pop_port = pop_relay(start_relay, pki, accounts, "--server-tls-required")
    pop = poplib.POP3("127.0.0.1", pop_port, timeout=10)
    assert "USER" not in pop.capa()
    with pytest.raises(poplib.error_proto, match="must use STLS before authentication"):
        pop.user("alice")
    pop.stls(context=pki.client_context())
    pop.user("alice")
    pop.pass_("secret")
    assert pop.stat()[0] == 0
    pop.quit()


@needs["openssl"]
def test_openssl_s_client_starttls_pop3(start_relay, pki: Pki, accounts: Path) -> None:
    _relay, pop_port = pop_relay(start_relay, pki, accounts)
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "pop3", "-connect", f"127.0.0.1:{pop_port}",
         "-CAfile", str(pki.ca_file), "-verify_return_error", "-crlf", "-brief", "-ign_eof"],
        input="USER alice\nPASS secret\nSTAT\nQUIT\n", capture_output=True, text=True,
        timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stderr
    assert "+OK 0 0" in result.stdout


@needs["curl"]
def test_curl_pop3s(start_relay, pki: Pki, accounts: Path) -> None:
    relay, pop_port = pop_relay(start_relay, pki, accounts, mode="--server-tls-connection")
    put_message(relay, pki, implicit=True)
    result = subprocess.run(
        ["curl", "-sS", f"pop3s://127.0.0.1:{pop_port}/1", "--user", "alice:secret",
         "--cacert", str(pki.ca_file)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "secret stuff" in result.stdout


def test_poplib_pop3_ssl(start_relay, pki: Pki, accounts: Path) -> None:
    _relay, pop_port = pop_relay(start_relay, pki, accounts, "--server-tls-required",
                                mode="--server-tls-connection")
    pop = poplib.POP3_SSL("127.0.0.1", pop_port, timeout=10, context=pki.client_context())
    assert "STLS" not in pop.capa()
    pop.user("alice")
    pop.pass_("secret")
    pop.quit()


def test_pop_stls_handshake_dropped(start_relay, pki: Pki, accounts: Path) -> None:
    relay, pop_port = pop_relay(start_relay, pki, accounts)
    with socket.create_connection(("127.0.0.1", pop_port), timeout=10) as sock:
        sock.recv(200)
        sock.sendall(b"STLS\r\nUSER alice\r\n")
        assert sock.recv(200) == b"+OK begin TLS negotiation\r\n"
        sock.sendall(b"PASS secret\r\n")  # plaintext where the handshake should be
        assert sock.recv(200) == b""
    log = relay.wait_for_log("pop connection closed: tls handshake failed")
    assert "failed: wrong version number" in log
