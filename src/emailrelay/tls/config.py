"""``--tls-config``: E-MailRelay's comma-separated TLS keywords.

``tlsv1.2`` sets a minimum protocol version, ``-tlsv1.3`` a maximum (likewise ``tlsv1.0``,
``tlsv1.1``, ``sslv3``).  ``op_no_ticket``, ``op_server_preference`` and ``op_all`` set
OpenSSL options; ``noverify`` keeps the verification options from failing a handshake.
``openssl`` and ``mbedtls`` choose a TLS library in E-MailRelay; here there is only one
(Python's ``ssl`` module on OpenSSL), so they are accepted with a note.  Anything else is
ignored with E-MailRelay's warning, unless ``ignoreextra`` is given.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

VERSIONS: dict[str, ssl.TLSVersion] = {
    "tlsv1.0": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}

OPTION_FLAGS: dict[str, int] = {
    "op_all": ssl.OP_ALL,
    "op_no_ticket": ssl.OP_NO_TICKET,
    "op_server_preference": ssl.OP_CIPHER_SERVER_PREFERENCE,
    # Renegotiation is always off here, so there is no resumption on renegotiation.
    "op_no_resumption": 0,
}

LIBRARY_KEYWORDS = ("openssl", "mbedtls")


@dataclass(frozen=True)
class TlsConfig:
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2  # modern default
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    options: int = 0  # extra OpenSSL option bits
    noverify: bool = False
    notes: tuple[str, ...] = field(default=())  # warnings for the start-up log


def parse_tls_config(values: list[str]) -> TlsConfig:
    """Every ``--tls-config`` value (the option may be repeated); raises ValueError."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    minimum: ssl.TLSVersion | None = None
    maximum = ssl.TLSVersion.MAXIMUM_SUPPORTED
    options = 0
    noverify = ignore_extra = False
    notes: list[str] = []
    ignored: list[str] = []
    for item in items:
        word = item.lower()
        if word in VERSIONS:
            minimum = VERSIONS[word]
        elif word.startswith("-") and word[1:] in VERSIONS:
            maximum = VERSIONS[word[1:]]
        elif word == "sslv3":
            minimum = ssl.TLSVersion.MINIMUM_SUPPORTED
            notes.append("tls-config: sslv3 is not available: the minimum protocol version "
                         "is the lowest the TLS library allows")
        elif word == "-sslv3":
            raise ValueError("-sslv3 leaves no protocol version: the TLS library has no SSLv3")
        elif word in OPTION_FLAGS:
            options |= OPTION_FLAGS[word]
        elif word == "noverify":
            noverify = True
        elif word == "ignoreextra":
            ignore_extra = True
        elif word in LIBRARY_KEYWORDS:
            if word != "openssl":
                notes.append(f"tls-config: {item} ignored: this program always uses "
                             "OpenSSL through Python's ssl module")
        else:
            ignored.append(item)
    if ignored and not ignore_extra:
        notes.append(f"tls-config: tls configuration items ignored: [{','.join(ignored)}]")
    if maximum is not ssl.TLSVersion.MAXIMUM_SUPPORTED:
        if minimum is None and maximum < ssl.TLSVersion.TLSv1_2:
            minimum = ssl.TLSVersion.MINIMUM_SUPPORTED  # an old maximum lowers the default
        elif minimum is not None and minimum > 0 and maximum < minimum:
            raise ValueError("the maximum protocol version is below the minimum")
    return TlsConfig(minimum or ssl.TLSVersion.TLSv1_2, maximum, options, noverify,
                     tuple(notes))


def version_name(version: str | None) -> str:
    """E-MailRelay's protocol names: ``TLSv1.0`` (Python says ``TLSv1``), ``TLSv1.2``..."""
    if not version:
        return ""
    return "TLSv1.0" if version == "TLSv1" else version
