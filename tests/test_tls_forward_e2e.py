"""Forwarding over TLS (--client-tls*, --client-tls-connection) to real TLS servers: our
own relay with --server-tls and aiosmtpd; and every failure leaves the message queued
(tests/test_forward_faults.py has a failed handshake, an unverified certificate, a drop
in the handshake and no STARTTLS with --client-tls-required, each followed by recovery)."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emailrelay.spool.envelope import parse
from tests.support.capture import CaptureServer
from tests.support.certs import Pki, der_of
from tests.support.relay import Relay, free_port, wait_until
from tests.support.spooling import as_client, spool_message, spool_state


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def server_context(pki: Pki, *names: str, expired: bool = False,
                   common_name: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.issue(*names, expired=expired, common_name=common_name).configure_cert(context)
    return context


def tls_server(start_relay, pki: Pki, *args: str) -> Relay:  # type: ignore[no-untyped-def]
    return start_relay("--server-tls", "--server-tls-certificate", str(pki.pem()), *args,
                       name="smarthost")



def assert_kept(spool: Path, message_id: str) -> None:
    """Nothing lost: the message waits in the queue (not .bad) for the next try."""
    assert spool_state(spool) == {message_id: "ready"}


# -- delivered -------------------------------------------------------------------------------


def test_starttls_to_our_own_relay(start_relay, pki: Pki, tmp_path: Path) -> None:
    smarthost = tls_server(start_relay, pki)
    spool = tmp_path / "spool"
    spool_message(spool)
    result = as_client(f"127.0.0.1:{smarthost.port}", spool, "--verbose", "--client-tls",
                       "--client-tls-verify", str(pki.ca_file))
    assert result.returncode == 0, result.stderr
    assert spool_state(spool) == {}
    assert re.search(rf"info: tls protocol established with 127\.0\.0\.1:{smarthost.port} "
                     r"protocol TLSv1\.3 cipher TLS_\w+\n", result.stderr), result.stderr
    content = smarthost.contents()[0].read_bytes()
    assert re.search(rb"with ESMTPS tls TLS_\w+ \(TLSv1\.3\) ; ", content)


def test_client_certificate_reaches_the_smarthosts_envelope(start_relay, pki: Pki,
                                                           tmp_path: Path) -> None:
    smarthost = tls_server(start_relay, pki, "--server-tls-verify", str(pki.ca_file))
    client = pki.issue("relay.example", common_name="relay.example")
    key, chain = pki.key_and_chain(client)
    spool = tmp_path / "spool"
    spool_message(spool)
    result = as_client(f"127.0.0.1:{smarthost.port}", spool, "--client-tls",
                       "--client-tls-certificate", str(key), "--client-tls-certificate",
                       str(chain), "--client-tls-verify", str(pki.ca_file))
    assert result.returncode == 0, result.stderr
    envelope = parse(smarthost.envelopes()[0].read_bytes())
    assert ssl.PEM_cert_to_DER_cert(envelope.client_certificate) == der_of(client)


def test_implicit_tls_to_aiosmtpd(pki: Pki, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool, content=b"Subject: smtps\r\n\r\nover tls from the start\r\n")
    with CaptureServer(ssl_context=server_context(pki)) as server:
        result = as_client(server.address, spool, "--client-tls-connection",
                           "--client-tls-verify", str(pki.ca_file))
        assert result.returncode == 0, result.stderr
        assert b"over tls from the start" in server.wait_for(1)[0].content
    assert spool_state(spool) == {}


def test_starttls_to_aiosmtpd_that_requires_it(pki: Pki, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer(tls_context=server_context(pki), require_starttls=True) as server:
        result = as_client(server.address, spool, "--client-tls", "--client-tls-required",
                           "--client-tls-verify", str(pki.ca_file))
        assert result.returncode == 0, result.stderr
        assert len(server.wait_for(1)) == 1


def test_client_tls_goes_on_in_plaintext_when_starttls_is_not_offered(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_message(spool)
    with CaptureServer() as server:
        result = as_client(server.address, spool, "--client-tls", "--verbose")
        assert result.returncode == 0, result.stderr
        assert len(server.wait_for(1)) == 1
    assert "tls protocol established" not in result.stderr


def test_server_name_indication(pki: Pki, tmp_path: Path) -> None:
    names: list[str | None] = []
    context = server_context(pki, "mail.example.com")
    context.sni_callback = lambda obj, name, ctx: names.append(name)  # type: ignore[func-returns-value]
    spool = tmp_path / "spool"
    for options in ([], ["--client-tls-server-name", "mail.example.com"]):
        spool_message(spool)
        with CaptureServer(ssl_context=context) as server:
            result = as_client(f"localhost:{server.port}", spool, "--client-tls-connection",
                               *options)
            assert result.returncode == 0, result.stderr
    # The forwarding host's name by default, --client-tls-server-name when given (None:
    # aiosmtpd's own start-up probe).
    assert [name for name in names if name] == ["localhost", "mail.example.com"]


def test_the_name_asked_for_or_verify_name_must_match(start_relay, pki: Pki,
                                                      tmp_path: Path) -> None:
    cert = pki.pem(pki.issue("mail.example.com", common_name="mail.example.com"))
    smarthost = start_relay("--server-tls", "--server-tls-certificate", str(cert))
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    address = f"127.0.0.1:{smarthost.port}"
    verify = ("--client-tls", "--client-tls-verify", str(pki.ca_file))
    # The certificate is not for the address we connected to.
    result = as_client(address, spool, *verify)
    assert result.returncode == 1
    assert (f"warning: smtp client error: tls handshake with {address} failed: certificate "
            "verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'."
            ) in result.stderr, result.stderr
    assert_kept(spool, message_id)
    # E-MailRelay's --client-tls-verify-name, wrong then right.
    result = as_client(address, spool, *verify, "--client-tls-verify-name", "other.example",
                       "--verbose")
    assert result.returncode == 1
    assert ("info: tls: certificate-subject=[/O=trustme v1.2.1/OU=Testing cert "
            in result.stderr)
    assert "required-peer-name=[other.example] ok=0" in result.stderr
    assert (f"smtp client error: tls handshake with {address} failed: the certificate is not "
            "for [other.example]: subject [") in result.stderr
    assert_kept(spool, message_id)
    result = as_client(address, spool, *verify, "--client-tls-verify-name", "mail.example.com")
    assert result.returncode == 0, result.stderr
    # Or the name is the one asked for with SNI.
    spool_message(spool)
    result = as_client(address, spool, *verify, "--client-tls-server-name", "mail.example.com")
    assert result.returncode == 0, result.stderr
    assert len(smarthost.envelopes()) == 2


# -- failures: the connection fails, the message stays -------------------------------------


def test_untrusted_certificate(start_relay, pki: Pki, tmp_path: Path) -> None:
    smarthost = tls_server(start_relay, Pki(tmp_path, "stranger"))
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    address = f"127.0.0.1:{smarthost.port}"
    result = as_client(address, spool, "--client-tls", "--client-tls-verify", str(pki.ca_file))
    assert result.returncode == 1
    assert (f"smtp client error: tls handshake with {address} failed: certificate verify "
            "failed: unable to get local issuer certificate") in result.stderr, result.stderr
    assert_kept(spool, message_id)
    assert smarthost.envelopes() == []


def test_expired_certificate(pki: Pki, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with CaptureServer(ssl_context=server_context(pki, expired=True)) as server:
        result = as_client(server.address, spool, "--client-tls-connection",
                           "--client-tls-verify", str(pki.ca_file))
        assert result.returncode == 1
        assert (f"smtp client error: cannot connect to {server.address}: tls handshake failed: "
                "certificate verify failed: certificate has expired") in result.stderr
        assert_kept(spool, message_id)
        assert server.messages == []
        # Without --client-tls-verify nothing is checked, as in E-MailRelay.
        result = as_client(server.address, spool, "--client-tls-connection")
        assert result.returncode == 0, result.stderr
        assert len(server.wait_for(1)) == 1


def test_implicit_tls_to_a_plaintext_server(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with CaptureServer() as server:
        result = as_client(server.address, spool, "--client-tls-connection")
        assert result.returncode == 1
        assert (f"smtp client error: cannot connect to {server.address}: tls handshake failed: "
                "wrong version number") in result.stderr, result.stderr
    assert_kept(spool, message_id)


class StartTlsServer:
    """A scripted smarthost: offers STARTTLS, says 220 with a plaintext reply appended
    (``inject``) and goes on over TLS."""

    def __init__(self, context: ssl.SSLContext, inject: bytes) -> None:
        self.context, self.inject = context, inject
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            with conn:
                lines = conn.makefile("rb")
                conn.sendall(b"220 scripted ESMTP\r\n")
                lines.readline()
                conn.sendall(b"250-scripted\r\n250 STARTTLS\r\n")
                assert lines.readline() == b"STARTTLS\r\n"
                conn.sendall(b"220 go ahead\r\n" + self.inject)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self._smtp(tls)

    def _smtp(self, tls: ssl.SSLSocket) -> None:
        lines = tls.makefile("rb")
        while line := lines.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                tls.sendall(b"250-scripted\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                tls.sendall(b"354 go on\r\n")
                while (data := lines.readline()) != b".\r\n":
                    self.received.append(data)
                tls.sendall(b"250 taken\r\n")
            elif verb == b"QUIT":
                tls.sendall(b"221 bye\r\n")
                return
            else:
                tls.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[list[StartTlsServer]]:
    servers: list[StartTlsServer] = []
    yield servers
    for server in servers:
        server.close()


def test_replies_injected_after_the_servers_220_are_ignored(pki: Pki, tmp_path: Path,
                                                            scripted) -> None:
    server = StartTlsServer(server_context(pki), inject=b"250 injected\r\n")
    scripted.append(server)
    spool = tmp_path / "spool"
    spool_message(spool, content=b"Subject: x\r\n\r\nstill delivered\r\n")
    result = as_client(server.address, spool, "--client-tls")
    assert result.returncode == 0, result.stderr
    assert ("warning: ignoring data the server sent after its starttls response"
            in result.stderr)
    assert b"still delivered\r\n" in server.received


# -- where the trusted CAs come from: <default> and a hashed directory -----------------------


def test_verify_default_uses_the_system_store_that_ssl_cert_file_names(start_relay, pki: Pki,
                                                                       tmp_path: Path) -> None:
    """``--client-tls-verify <default>`` trusts OpenSSL's default verify paths, which the
    relay's SSL_CERT_FILE redirects to the test CA: a real STARTTLS handshake verifies and
    the message is delivered."""
    spool = tmp_path / "spool"
    spool_message(spool, content=b"Subject: x\r\n\r\nverified by default\r\n")
    with CaptureServer(tls_context=server_context(pki), require_starttls=True) as server:
        relay = start_relay("--forward", "--forward-to", server.address, "--client-tls",
                            "--client-tls-verify", "<default>", spool=spool,
                            env={"SSL_CERT_FILE": str(pki.ca_file)})
        (message,) = server.wait_for(1)
        assert b"verified by default" in message.content
        relay.wait_for_log(f"tls protocol established with {server.address} protocol TLSv1.3")
    wait_until(lambda: spool_state(spool) == {})


def test_verify_default_without_the_ca_in_the_system_store(start_relay, pki: Pki,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The same without SSL_CERT_FILE: the system's store does not know the test CA, the
    handshake fails verification and the message stays queued."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the relay inherits os.environ
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with CaptureServer(tls_context=server_context(pki), require_starttls=True) as server:
        relay = start_relay("--forward", "--forward-to", server.address, "--client-tls",
                            "--client-tls-verify", "<default>", spool=spool)
        log = relay.wait_for_log("certificate verify failed")
        assert "unable to get local issuer certificate" in log, log
        assert server.messages == []
    wait_until(lambda: spool_state(spool) == {message_id: "ready"})


def ca_directory(pki: Pki, directory: Path, *, rehash: bool = True) -> Path:
    """A CA directory holding the test CA, hashed by ``openssl rehash`` (or not)."""
    directory.mkdir()
    (directory / "test-ca.pem").write_bytes(pki.ca_file.read_bytes())
    if rehash:
        subprocess.run(["openssl", "rehash", str(directory)], check=True, timeout=30)
        assert any(p.is_symlink() and p.name.endswith(".0") for p in directory.iterdir())
    return directory


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_verify_with_a_hashed_ca_directory(pki: Pki, tmp_path: Path) -> None:
    """``--client-tls-verify <dir>`` looks the issuer up by its hash in the directory: the
    hashed directory verifies the smarthost, the same directory unhashed does not."""
    hashed = ca_directory(pki, tmp_path / "hashed")
    unhashed = ca_directory(pki, tmp_path / "unhashed", rehash=False)
    spool = tmp_path / "spool"
    message_id = spool_message(spool)
    with CaptureServer(tls_context=server_context(pki), require_starttls=True) as server:
        result = as_client(server.address, spool, "--client-tls", "--client-tls-verify",
                           str(unhashed))
        assert result.returncode == 1
        assert (f"smtp client error: tls handshake with {server.address} failed: certificate "
                "verify failed: unable to get local issuer certificate") in result.stderr, \
            result.stderr
        assert_kept(spool, message_id)
        result = as_client(server.address, spool, "--client-tls", "--client-tls-verify",
                           str(hashed), "--verbose")
        assert result.returncode == 0, result.stderr
        assert len(server.wait_for(1)) == 1
    assert "tls protocol established with" in result.stderr
    assert spool_state(spool) == {}
