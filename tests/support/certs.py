"""Certificates made for a test with trustme: a CA, server and client certificates."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import trustme


class Pki:
    """A private CA writing PEM files into ``directory``."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        self.ca = trustme.CA(organization_name=f"test {name}")
        self.ca_file = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._count = 0

    def issue(self, *names: str, common_name: str | None = None,
              expired: bool = False) -> trustme.LeafCert:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
        return self.ca.issue_cert(*(names or ("localhost", "127.0.0.1")),
                                  common_name=common_name,
                                  not_before=past - datetime.timedelta(days=30) if expired
                                  else None,
                                  not_after=past if expired else None)

    def pem(self, leaf: trustme.LeafCert | None = None, name: str = "") -> Path:
        """The key and the chain in one private file (E-MailRelay's one-file form)."""
        self._count += 1
        path = self.directory / f"{name or 'cert'}{self._count}.pem"
        (leaf or self.issue()).private_key_and_cert_chain_pem.write_to_path(str(path))
        path.chmod(0o600)
        return path

    def key_and_chain(self, leaf: trustme.LeafCert | None = None) -> tuple[Path, Path]:
        """The key and the chain in two files, key first (the option given twice)."""
        leaf = leaf or self.issue()
        self._count += 1
        key = self.directory / f"key{self._count}.pem"
        chain = self.directory / f"chain{self._count}.pem"
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        return key, chain

    def client_context(self, certificate: trustme.LeafCert | None = None) -> ssl.SSLContext:
        """A client context that trusts this CA (and presents ``certificate``)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if certificate is not None:
            certificate.configure_cert(context)
        return context


def der_of(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
