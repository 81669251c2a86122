"""TLS pieces without a relay process: --tls-config, certificate and key files, contexts,
the semantic checks on the TLS options."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emailrelay.options.parser import UsageError, parse
from emailrelay.options.validate import validate
from emailrelay.tls.config import parse_tls_config, version_name
from emailrelay.tls.files import CertificateFiles, TlsFileError, load_ca
from emailrelay.tls.profiles import ClientTls, ServerTls
from tests.support.certs import Pki

# -- --tls-config ------------------------------------------------------------------------------


def test_modern_defaults() -> None:
    config = parse_tls_config([])
    assert config.minimum is ssl.TLSVersion.TLSv1_2
    assert config.maximum is ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert config.options == 0 and not config.noverify and config.notes == ()


@pytest.mark.parametrize(("values", "minimum", "maximum"), [
    (["tlsv1.3"], ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    (["-tlsv1.2"], ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    (["tlsv1.2,-tlsv1.2"], ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    (["tlsv1.2", "-tlsv1.3"], ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),  # repeated
    (["tlsv1.0"], ssl.TLSVersion.TLSv1, ssl.TLSVersion.MAXIMUM_SUPPORTED),
    # A maximum below the default minimum lowers the minimum instead of failing.
    (["-tlsv1.1"], ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_1),
    ([" TLSv1.3 , "], ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.MAXIMUM_SUPPORTED),
])
def test_protocol_version_keywords(values: list[str], minimum: ssl.TLSVersion,
                                   maximum: ssl.TLSVersion) -> None:
    config = parse_tls_config(values)
    assert (config.minimum, config.maximum) == (minimum, maximum)


@pytest.mark.parametrize(("values", "error"), [
    (["tlsv1.3,-tlsv1.2"], "the maximum protocol version is below the minimum"),
    (["-sslv3"], "-sslv3 leaves no protocol version"),
])
def test_impossible_versions_are_errors(values: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_tls_config(values)


def test_option_keywords() -> None:
    config = parse_tls_config(["op_no_ticket,op_server_preference,op_all,op_no_resumption,"
                               "noverify"])
    assert config.options == ssl.OP_NO_TICKET | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_ALL
    assert config.noverify and config.notes == ()


def test_library_keywords_are_accepted_with_a_note() -> None:
    assert parse_tls_config(["openssl"]).notes == ()
    assert parse_tls_config(["mbedtls,tlsv1.2"]).notes == (
        "tls-config: mbedtls ignored: this program always uses OpenSSL through Python's "
        "ssl module",)


def test_unknown_keywords_are_ignored_with_e_mailrelays_warning() -> None:
    assert parse_tls_config(["tlsv1.2,frobnicate,xyz"]).notes == (
        "tls-config: tls configuration items ignored: [frobnicate,xyz]",)
    assert parse_tls_config(["frobnicate,ignoreextra"]).notes == ()


def test_sslv3_minimum_is_the_lowest_available() -> None:
    config = parse_tls_config(["sslv3"])
    assert config.minimum is ssl.TLSVersion.MINIMUM_SUPPORTED
    assert "sslv3 is not available" in config.notes[0]


def test_version_names_are_e_mailrelays() -> None:
    assert [version_name(v) for v in ("TLSv1", "TLSv1.1", "TLSv1.3", None)] == [
        "TLSv1.0", "TLSv1.1", "TLSv1.3", ""]


# -- certificate and key files --------------------------------------------------------------


@pytest.mark.parametrize(("values", "key", "chain"), [
    (["both.pem"], "both.pem", "both.pem"),
    (["key.pem", "chain.pem"], "key.pem", "chain.pem"),
    (["key.pem,chain.pem"], "key.pem", "chain.pem"),  # E-MailRelay's joined form
])
def test_certificate_option_forms(values: list[str], key: str, chain: str,
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    files = CertificateFiles.from_values(values)
    # Absolute, so that a reload after the daemon's chdir("/") finds them.
    assert (files.key, files.chain) == (str(tmp_path / key), str(tmp_path / chain))


def test_both_forms_load(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    for files in (CertificateFiles.from_values([str(pki.pem())]),
                  CertificateFiles.from_values([str(p) for p in pki.key_and_chain()])):
        files.load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def load_error(key: Path, chain: Path | None = None) -> str:
    files = CertificateFiles.from_values([str(key)] + ([str(chain)] if chain else []))
    with pytest.raises(TlsFileError) as info:
        files.load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    return str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope.pem") == (
        f"cannot read the tls key file \"{tmp_path / 'nope.pem'}\": No such file or directory")
    key, _ = Pki(tmp_path).key_and_chain()
    assert load_error(key, tmp_path / "gone.pem") == (
        f"cannot read the tls certificate file \"{tmp_path / 'gone.pem'}\": No such file or "
        "directory")


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    assert load_error(tmp_path) == (
        f"cannot read the tls key file \"{tmp_path}\": Is a directory")


@pytest.mark.parametrize("mode", [0o644, 0o602, 0o604])
def test_a_key_other_users_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = Pki(tmp_path).pem()
    path.chmod(mode)
    assert load_error(path) == (
        f"the tls key file \"{path}\" can be read or written by other users (mode "
        f"{mode:04o}): make it private, for example with chmod o-rwx")


def test_a_group_readable_key_is_accepted(tmp_path: Path) -> None:
    path = Pki(tmp_path).pem()
    path.chmod(0o640)
    CertificateFiles.from_values([str(path)]).load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def test_no_key_and_no_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    key, chain = pki.key_and_chain()
    chain.chmod(0o600)
    assert load_error(chain) == f"no private key in the tls key file \"{chain}\""
    assert load_error(key, key) == f"no certificate in the tls certificate file \"{key}\""


def test_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    key, _ = pki.key_and_chain()
    _, other_chain = pki.key_and_chain()
    assert load_error(key, other_chain) == (
        f"the tls key in \"{key}\" does not match the certificate in \"{other_chain}\"")


def test_a_key_with_a_passphrase_is_refused_without_prompting(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    _, chain = pki.key_and_chain()
    key = tmp_path / "locked.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    key.chmod(0o600)
    assert load_error(key, chain) == (
        f"the tls key in \"{key}\" is protected by a passphrase: a key without one is needed")


def test_a_broken_certificate_is_reported_with_the_files(tmp_path: Path) -> None:
    key, chain = Pki(tmp_path).key_and_chain()
    text = chain.read_text()
    chain.write_text(text[:60] + "!!!!" + text[64:])
    error = load_error(key, chain)
    assert error.startswith(f"cannot use the tls certificate \"{chain}\" with the key \"{key}\": ")


def test_ca_locations(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    load_ca(context, str(pki.ca_file))
    assert context.cert_store_stats()["x509_ca"] == 1
    load_ca(context, "<default>")  # the system's store: no error
    hashed = tmp_path / "hashed"
    hashed.mkdir()
    (hashed / "ca.pem").write_bytes(pki.ca_file.read_bytes())
    subprocess.run(["openssl", "rehash", str(hashed)], check=True)
    load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), str(hashed))
    with pytest.raises(TlsFileError, match=r"cannot read the tls CA file .*nope\.pem"):
        load_ca(context, str(tmp_path / "nope.pem"))
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(TlsFileError, match=f"cannot load CA certificates from \"{empty}\": "):
        load_ca(context, str(empty))


# -- contexts -----------------------------------------------------------------------------


def test_server_context_defaults_and_client_certificates(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    files = CertificateFiles.from_values([str(pki.pem())])
    plain = ServerTls(files, None, parse_tls_config([])).context
    assert plain.minimum_version is ssl.TLSVersion.TLSv1_2
    assert plain.options & ssl.OP_NO_COMPRESSION and plain.options & ssl.OP_NO_RENEGOTIATION
    assert plain.verify_mode is ssl.CERT_NONE  # no client certificate is asked for
    verifying = ServerTls(files, str(pki.ca_file), parse_tls_config(["-tlsv1.2"])).context
    assert verifying.verify_mode is ssl.CERT_REQUIRED
    assert verifying.maximum_version is ssl.TLSVersion.TLSv1_2
    for mode in ("<none>",):
        assert ServerTls(files, mode, parse_tls_config([])).context.verify_mode is (
            ssl.CERT_NONE)
    noverify = ServerTls(files, str(pki.ca_file), parse_tls_config(["noverify"])).context
    assert noverify.verify_mode is ssl.CERT_NONE


def test_client_contexts(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    none = ClientTls(None, None, parse_tls_config([]))
    assert none._plain.verify_mode is ssl.CERT_NONE and not none._name_checking.check_hostname
    verifying = ClientTls(None, str(pki.ca_file), parse_tls_config(["op_no_ticket"]))
    assert verifying._name_checking.check_hostname
    assert verifying._plain.verify_mode is ssl.CERT_REQUIRED
    assert not verifying._plain.check_hostname
    assert verifying._plain.options & ssl.OP_NO_TICKET


def test_reload_keeps_the_old_context_when_the_new_files_are_bad(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    path = pki.pem()
    server = ServerTls(CertificateFiles.from_values([str(path)]), None, parse_tls_config([]))
    old = server.context
    path.write_text("garbage\n")
    with pytest.raises(TlsFileError, match="no private key"):
        server.reload()
    assert server.context is old
    path.write_bytes(pki.issue().private_key_and_cert_chain_pem.bytes())
    server.reload()
    assert server.context is not old


# -- E-MailRelay's semantic checks ----------------------------------------------------------

CERT = ["--server-tls-certificate", "/x.pem"]


@pytest.mark.parametrize(("argv", "error"), [
    (["--client-tls", "--client-tls-connection"],
     "the --client-tls and --client-tls-connection options cannot be used together"),
    (["--server-tls", "--server-tls-connection", *CERT],
     "the --server-tls and --server-tls-connection options cannot be used together"),
    (["--server-tls"], "the --server-tls option requires --server-tls-certificate"),
    (["--server-tls-connection"],
     "the --server-tls-connection option requires --server-tls-certificate"),
    (CERT, "the --server-tls options require either --server-tls or --server-tls-connection"),
    (["--server-tls-verify", "/ca.pem"],
     "the --server-tls options require either --server-tls or --server-tls-connection"),
    (["--client-tls-verify", "<default>"],
     "the --client-tls- options require --client-tls or --client-tls-connection"),
    (["--client-tls-required"],
     "the --client-tls- options require --client-tls or --client-tls-connection"),
    (["--client-tls-certificate", "/c.pem"],
     "the --client-tls- options require --client-tls or --client-tls-connection"),
    (["--server-tls", *CERT, *CERT, *CERT],
     "the --server-tls-certificate option cannot be used more than twice"),
    (["--client-tls", *(["--client-tls-certificate", "/c.pem"] * 3)],
     "the --client-tls-certificate option cannot be used more than twice"),
    (["--client-tls", "--client-tls-verify-name", "mx"],
     "the --client-tls-verify-name options requires --client-tls-verify"),
    (["--server-tls-required"], "--server-tls-required requires --server-tls or "
                                "--server-tls-connection"),
    (["--tls-config", "tlsv1.3,-tlsv1.2"],
     "invalid value for --tls-config: the maximum protocol version is below the minimum"),
    (["--in-spool-dir", "/s", "--in-server-tls"],
     "the --in-server-tls option requires --in-server-tls-certificate"),
])
def test_semantic_errors(argv: list[str], error: str) -> None:
    with pytest.raises(UsageError) as info:
        validate(parse(argv))
    assert str(info.value) == error


@pytest.mark.parametrize("argv", [
    ["--server-tls", *CERT, "--server-tls-required", "--server-tls-verify", "/ca.pem"],
    ["--server-tls-connection", *CERT, *CERT],
    ["--client-tls", "--client-tls-required", "--client-tls-verify", "<default>",
     "--client-tls-verify-name", "mx", "--client-tls-server-name", "mx.example.com"],
    ["--client-tls-connection", "--client-tls-certificate", "/k", "--client-tls-certificate",
     "/c", "--client-tls-server-name", "mx.example.com"],
])
def test_good_combinations(argv: list[str]) -> None:
    assert validate(parse(argv)) == []


def test_tls_config_notes_become_start_up_warnings() -> None:
    assert validate(parse(["--tls-config", "mbedtls,bogus"])) == [
        "tls-config: mbedtls ignored: this program always uses OpenSSL through Python's ssl "
        "module", "tls-config: tls configuration items ignored: [bogus]"]
