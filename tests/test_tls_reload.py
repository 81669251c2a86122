"""Certificates reloaded on SIGHUP (beyond E-MailRelay) and certificate problems at
start-up, with the real program."""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.certs import Pki, der_of
from tests.support.relay import emailrelay_command, free_port, run_emailrelay, wait_for_port

MESSAGE = "Subject: reload\r\n\r\nhello\r\n"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def served_certificate(port: int, pki: Pki) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=pki.client_context())
        der = smtp.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def test_sighup_reloads_the_certificate_without_dropping_sessions(start_relay,
                                                                   pki: Pki) -> None:
    first, second = pki.issue(), pki.issue()
    path = pki.pem(first)
    relay = start_relay("--server-tls", "--server-tls-certificate", str(path))
    assert served_certificate(relay.port, pki) == der_of(first)
    session = smtplib.SMTP("127.0.0.1", relay.port, timeout=10)
    session.starttls(context=pki.client_context())
    session.ehlo("before-reload")

    write_private(path, second.private_key_and_cert_chain_pem.bytes())
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log("info: reloaded the server tls certificate\n")
    assert served_certificate(relay.port, pki) == der_of(second)

    # A broken file: reported, and the certificate in use stays.
    path.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log(f"error: cannot reload the server tls certificate: no certificate in "
                       f"the tls certificate file \"{path}\": still using the previous one")
    assert served_certificate(relay.port, pki) == der_of(second)

    # The session made before both reloads carries on over its own TLS connection.
    session.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    session.quit()
    assert len(relay.envelopes()) == 1
    assert relay.process.poll() is None


def test_a_reload_that_would_pair_a_key_with_the_wrong_certificate(start_relay,
                                                                    pki: Pki) -> None:
    leaf = pki.issue()
    key, chain = pki.key_and_chain(leaf)
    relay = start_relay("--server-tls", "--server-tls-certificate", str(key),
                        "--server-tls-certificate", str(chain))
    assert served_certificate(relay.port, pki) == der_of(leaf)  # serving: SIGHUP is handled
    chain.write_bytes(pki.issue().cert_chain_pems[0].bytes())  # the key was not replaced
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log(f"error: cannot reload the server tls certificate: the tls key in "
                       f"\"{key}\" does not match the certificate in \"{chain}\": still using "
                       "the previous one")
    assert served_certificate(relay.port, pki) == der_of(leaf)
    key.chmod(0o644)
    relay.process.send_signal(signal.SIGHUP)
    relay.wait_for_log(f"the tls key file \"{key}\" can be read or written by other users")


def test_a_daemon_reloads_relative_paths_after_changing_directory(pki: Pki,
                                                                  tmp_path: Path) -> None:
    first, second = pki.issue(), pki.issue()
    relative = pki.pem(first).relative_to(tmp_path)
    port = free_port()
    pid_file, log_file = tmp_path / "relay.pid", tmp_path / "relay.log"
    subprocess.run([*emailrelay_command(), "--as-server", "--log", "--log-file", str(log_file),
                    "--pid-file", str(pid_file), "--port", str(port), "--interface",
                    "127.0.0.1", "--spool-dir", str(tmp_path / "spool"), "--user", "root",
                    "--server-tls", "--server-tls-certificate", str(relative)],
                   cwd=tmp_path, check=True, timeout=20)
    pid = int(pid_file.read_text())
    try:
        wait_for_port(port)
        assert served_certificate(port, pki) == der_of(first)
        write_private(tmp_path / relative, second.private_key_and_cert_chain_pem.bytes())
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded the server tls certificate" not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.05)
        assert served_certificate(port, pki) == der_of(second)
    finally:
        os.kill(pid, signal.SIGTERM)


# -- start-up errors ----------------------------------------------------------------------------


def start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_emailrelay("--no-daemon", "--log", "--user", "root", "--port", str(free_port()),
                          "--interface", "127.0.0.1", "--spool-dir", str(tmp_path / "spool"),
                          *args)


def test_certificate_problems_stop_the_start_naming_the_file(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = start(tmp_path, "--server-tls", "--server-tls-certificate", str(missing))
    assert result.returncode == 1
    assert (f"emailrelay: error: cannot read the tls key file \"{missing}\": No such file or "
            "directory") in result.stderr
    open_key = pki.pem()
    open_key.chmod(0o644)
    result = start(tmp_path, "--server-tls-connection", "--server-tls-certificate",
                   str(open_key))
    assert result.returncode == 1
    assert (f"emailrelay: error: the tls key file \"{open_key}\" can be read or written by "
            "other users (mode 0644)") in result.stderr
    key, _ = pki.key_and_chain()
    _, other_chain = pki.key_and_chain()
    result = start(tmp_path, "--server-tls", "--server-tls-certificate", str(key),
                   "--server-tls-certificate", str(other_chain))
    assert result.returncode == 1
    assert (f"emailrelay: error: the tls key in \"{key}\" does not match the certificate in "
            f"\"{other_chain}\"") in result.stderr


def test_ca_and_client_certificate_problems(pki: Pki, tmp_path: Path) -> None:
    result = start(tmp_path, "--server-tls", "--server-tls-certificate", str(pki.pem()),
                   "--server-tls-verify", str(tmp_path / "no-ca.pem"))
    assert result.returncode == 1
    assert f"cannot read the tls CA file \"{tmp_path / 'no-ca.pem'}\"" in result.stderr
    result = run_emailrelay("--as-client", "127.0.0.1:9", "--spool-dir", str(tmp_path),
                            "--client-tls", "--client-tls-certificate", str(tmp_path / "c.pem"))
    assert result.returncode == 1
    assert f"cannot read the tls key file \"{tmp_path / 'c.pem'}\"" in result.stderr


def test_semantic_error_from_the_command_line(tmp_path: Path) -> None:
    result = start(tmp_path, "--server-tls")
    assert result.returncode == 1
    assert ("emailrelay: usage error: the --server-tls option requires "
            "--server-tls-certificate") in result.stderr


def test_client_tls_reload_hook_rebuilds_its_contexts(pki: Pki) -> None:
    from emailrelay.tls.config import parse_tls_config
    from emailrelay.tls.profiles import ClientTls

    client = ClientTls(None, str(pki.ca_file), parse_tls_config([]))
    before = client._plain
    client.reload()
    assert client._plain is not before and client._plain.verify_mode is ssl.CERT_REQUIRED
    pki.ca_file.write_text("not a certificate\n")
    with pytest.raises(Exception, match="cannot load CA certificates"):
        client.reload()
