"""Parsing ``--filter`` and ``--client-filter`` values.

Each option may be given more than once and each value may be a comma-separated
chain (E-MailRelay's form); all of them run in order.  An item is one of:

==================  ==============================================================
``exit:<n>``        finish as a program exiting with ``n`` would
``sleepms:<ms>``    wait, then succeed (for testing)
``net:<address>``   ask a network service (``host:port`` or a socket path)
``spam:<address>``  ask SpamAssassin's spamd; ``spam-edit:`` also lets it edit
``deliver:<opts>``  deliver to local mailboxes (``hardlink``, ``nodelete``)
``copy:<opts>``     copy into every spool sub-directory (``pop``, ``hardlink``,
                    ``nodelete``)
``split:<opts>``    one message per recipient domain (``raw``, a port number)
``mx:<opts>``       look up the ForwardTo domain's mail server (DNS servers,
                    ``nst=<s>``, ``rt=<s>``)
``msgid:``          add a Message-ID header when there is none
``file:<path>``     a program; so is any other value
==================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from emailrelay.net.request_client import parse_endpoint
from emailrelay.process.child import program_path, program_warnings
from emailrelay.util.printable import printable

NUMBER_LIMIT = (2**32 - 1) // 1000


class SpecError(ValueError):
    """A filter specification that cannot work."""


@dataclass(frozen=True)
class FilterSpec:
    kind: str  # exit, sleepms, net, spam, spam-edit, deliver, copy, split, mx, msgid, file
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "file" else f"{self.kind}:{self.value}"


_PREFIXED = ("exit", "sleepms", "net", "spam", "spam-edit", "deliver", "copy", "split", "mx",
             "msgid", "file")


def parse_chain(values: Iterable[str]) -> tuple[list[FilterSpec], list[str]]:
    """All values of one option as one chain, with warnings to log at start-up."""
    specs: list[FilterSpec] = []
    warnings: list[str] = []
    for value in values:
        for item in value.split(","):
            spec = parse_one(item)
            warnings.extend(_warnings(spec))
            specs.append(spec)
    return specs, warnings


def parse_one(text: str) -> FilterSpec:
    if text == "":
        return FilterSpec("exit", "0")
    kind, sep, value = text.partition(":")
    if not sep or kind not in _PREFIXED:
        kind, value = "file", text
    if kind in ("exit", "sleepms"):
        _check_number(value)
    elif kind in ("net", "spam", "spam-edit"):
        try:
            parse_endpoint(value)
        except ValueError as e:
            raise SpecError(str(e)) from None
    elif kind == "file":
        try:
            value = program_path(value)
        except ValueError as e:
            raise SpecError(str(e)) from None
    return FilterSpec(kind, value)


def _check_number(value: str) -> None:
    if not value:
        raise SpecError("numeric value missing")
    if not value.isdigit() or not value.isascii():
        raise SpecError(f"invalid numeric value: {printable(value)}")
    if int(value) >= NUMBER_LIMIT:
        raise SpecError(f"numeric value too big: {printable(value)}")


def _warnings(spec: FilterSpec) -> list[str]:
    if spec.kind == "mx":
        from emailrelay.filters.mx import parse_options  # (loads dnspython)
        return parse_options(spec.value)[1]
    return program_warnings(spec.value, "filter") if spec.kind == "file" else []
