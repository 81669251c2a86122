"""Certificate, key and CA files: which is which, and checks that name the file at fault.

``--server-tls-certificate`` (and ``--client-tls-certificate``) is one PEM file holding
the private key and the certificate chain, or the option given twice: the key file
first, then the certificate file (as in E-MailRelay, a single value ``key,cert`` means
the same).  A key file that other users can read or write is refused: anyone on the
machine could impersonate the relay with it.  Group access is allowed (the ``ssl-cert``
group convention).
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass


class TlsFileError(Exception):
    """A certificate, key or CA file that cannot be used (start-up exit code 1)."""


@dataclass(frozen=True)
class CertificateFiles:
    key: str  # absolute paths: a reload after the daemon's chdir("/") finds them
    chain: str

    @classmethod
    def from_values(cls, values: list[str]) -> CertificateFiles:
        """From the option's values: [both], [key, certificate] or ["key,certificate"]."""
        if len(values) == 1 and "," in values[0]:
            values = values[0].split(",", 1)
        if not 1 <= len(values) <= 2 or not all(values):
            raise TlsFileError("a certificate option needs one file, or two: key then "
                               "certificate")
        key, chain = (values[0], values[-1])
        return cls(os.path.abspath(key), os.path.abspath(chain))

    def files(self) -> list[str]:
        return [self.key, self.chain]

    def load_into(self, context: ssl.SSLContext) -> None:
        """Check both files and load them; raise :class:`TlsFileError` saying what is wrong."""
        key_pem = _read(self.key, "key")
        _check_private(self.key)
        if b"PRIVATE KEY-----" not in key_pem:
            raise TlsFileError(f"no private key in the tls key file \"{self.key}\"")
        encrypted = TlsFileError(f"the tls key in \"{self.key}\" is protected by a "
                                 "passphrase: a key without one is needed")
        if b"ENCRYPTED PRIVATE KEY-----" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem:
            raise encrypted
        chain_pem = key_pem if self.chain == self.key else _read(self.chain, "certificate")
        if b"-----BEGIN CERTIFICATE-----" not in chain_pem:
            raise TlsFileError(f"no certificate in the tls certificate file \"{self.chain}\"")
        try:
            context.load_cert_chain(self.chain, self.key, password=lambda: _raise(encrypted))
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise TlsFileError(f"the tls key in \"{self.key}\" does not match the "
                                   f"certificate in \"{self.chain}\"") from None
            raise TlsFileError(f"cannot use the tls certificate \"{self.chain}\" with the key "
                               f"\"{self.key}\": {ssl_reason(e)}") from None
        except OSError as e:  # replaced or removed since it was read
            raise TlsFileError(f"cannot read \"{e.filename or self.chain}\": "
                               f"{e.strerror}") from None


def _raise(error: Exception) -> bytes:
    raise error  # asked for a passphrase: never prompt on the terminal


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError as e:
        raise TlsFileError(f"cannot read the tls {what} file \"{path}\": "
                           f"{e.strerror}") from None


def _check_private(path: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise TlsFileError(f"the tls key file \"{path}\" can be read or written by other "
                           f"users (mode {stat.S_IMODE(mode):04o}): make it private, for "
                           "example with chmod o-rwx")


def load_ca(context: ssl.SSLContext, location: str) -> None:
    """``<default>``: the system's CA certificates; a directory (hashed, as ``openssl
    rehash`` leaves it) or a file of PEM certificates."""
    if location == "<default>":
        context.set_default_verify_paths()
        return
    path = os.path.abspath(location)
    try:
        if os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            _read(path, "CA")
            context.load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        raise TlsFileError(f"cannot load CA certificates from \"{path}\": "
                           f"{ssl_reason(e)}") from None
    except OSError as e:
        raise TlsFileError(f"cannot read the tls CA file \"{path}\": {e.strerror}") from None


def ssl_reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason in words: ``NO_CERTIFICATE_OR_CRL_FOUND`` -> ``no certificate or
    crl found``."""
    if error.reason:
        return error.reason.lower().replace("_", " ")
    return str(error.args[1] if len(error.args) > 1 else error)
