"""Feature switches such as ``--server-smtp-config=+chunking,-pipelining``.

Each comma-separated item turns a feature on (``x``, ``+x``, ``with-x``), off
(``-x``, ``nox``, ``without-x``) or back to its default (``=x``), as E-MailRelay reads
them.
"""

from __future__ import annotations

SERVER_SMTP_DEFAULTS = {"pipelining": True, "chunking": False, "smtputf8": False,
                        "smtputf8strict": False, "strictparsing": True, "alabels": True,
                        "linger": True}
CLIENT_SMTP_DEFAULTS = {"pipelining": False, "smtputf8strict": True, "eightbitstrict": False,
                        "binarymimestrict": True}


def _item(item: str, known: dict[str, bool]) -> tuple[str, bool | None]:
    """Return (feature, value) where None means "the default"."""
    lowered = item.strip().lower()
    for prefix, value in (("+", True), ("with-", True), ("-", False), ("without-", False),
                          ("=", None)):
        if lowered.startswith(prefix) and lowered[len(prefix):] in known:
            return lowered[len(prefix):], value
    if lowered in known:
        return lowered, True
    if lowered.startswith("no") and lowered[2:] in known:
        return lowered[2:], False
    raise ValueError(f"unknown keyword \"{item.strip()}\" (expected: {', '.join(known)})")


def parse_switches(values: list[str], defaults: dict[str, bool]) -> dict[str, bool]:
    result = dict(defaults)
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            name, setting = _item(item, defaults)
            result[name] = defaults[name] if setting is None else setting
    return result
