"""Parsing ``--address-verifier``: ``exit:<n>``, ``net:<address>``, ``account:<options>``,
``file:<path>`` or a program path."""

from __future__ import annotations

from dataclasses import dataclass

from emailrelay.net.request_client import parse_endpoint
from emailrelay.process.child import program_path, program_warnings
from emailrelay.util.printable import printable
from emailrelay.verify.account import parse_options


@dataclass(frozen=True)
class VerifierSpec:
    kind: str  # exit, net, account or file
    value: str


def parse_spec(text: str) -> tuple[VerifierSpec, list[str]]:
    """The verifier and start-up warnings; :class:`ValueError` says what is wrong."""
    kind, sep, value = text.partition(":")
    if text == "":
        return VerifierSpec("exit", "0"), []
    if sep and kind == "exit":
        if not value.isdigit() or not value.isascii():
            raise ValueError(f"not a numeric exit code: {printable(value)}")
        return VerifierSpec("exit", value), []
    if sep and kind == "net":
        parse_endpoint(value)
        return VerifierSpec("net", value), []
    if sep and kind == "account":
        parse_options(value)
        return VerifierSpec("account", value), []
    path = program_path(value if sep and kind == "file" else text)
    return VerifierSpec("file", path), program_warnings(path, "verifier")
