"""What a filter decided, and how E-MailRelay 2.6 reads exit codes and filter output."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from emailrelay.util.printable import printable

SERVER = "filter"
CLIENT = "client-filter"
ROUTING = "routing-filter"


class Verdict(Enum):
    OK = "ok"
    ABANDON = "abandon"  # leave the message alone (the filter may have removed it)
    FAIL = "fail"


@dataclass(frozen=True)
class FilterResult:
    verdict: Verdict
    # Server side: rescan the spool and forward.  Client side: stop the forwarding run
    # once this message is done.
    special: bool = False
    response: str = ""  # FAIL: the text for the SMTP client
    response_code: int = 0  # FAIL: a 4xx/5xx code the filter asked for, else 0
    reason: str = ""  # FAIL: the text for the log and the .bad envelope

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def abandoned(self) -> bool:
        return self.verdict is Verdict.ABANDON

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL

    def describe(self, kind: str) -> str:
        """The summary E-MailRelay logs, such as ``failed response=[rejected]``."""
        words = {Verdict.OK: "ok", Verdict.ABANDON: "ok(abandon)", Verdict.FAIL: "failed"}
        text = words[self.verdict]
        if self.special:
            text += " +rescan" if kind == SERVER else " +break"
        text += f" response=[{self.response}]"
        if self.reason != self.response:
            text += f" reason=[{self.reason}]"
        return text


OK = FilterResult(Verdict.OK)


def failure(response: str, reason: str | None = None, code: int = 0, *,
            special: bool = False) -> FilterResult:
    return FilterResult(Verdict.FAIL, special, response, code,
                        response if reason is None else reason)


def from_exit_code(code: int, kind: str) -> tuple[Verdict, bool]:
    """E-MailRelay's table: 0 ok, 1-99 fail, 100 abandon, 101 ok, then by side.

    Server side 102 abandon, 103 ok and 104 fail all ask for a rescan; client side
    102 ok, 104 abandon and 105 fail stop the forwarding run, and 103 is a plain ok.
    Anything else fails.
    """
    if code in (0, 101):
        return Verdict.OK, False
    if code == 100:
        return Verdict.ABANDON, False
    if kind == SERVER:
        special = {102: Verdict.ABANDON, 103: Verdict.OK, 104: Verdict.FAIL}
    else:
        special = {102: Verdict.OK, 104: Verdict.ABANDON, 105: Verdict.FAIL}
        if code == 103:
            return Verdict.OK, False
    if code in special:
        return special[code], True
    return Verdict.FAIL, False


_CODE = re.compile(r"([45][0-9][0-9])(?:[ \t]|$)")


def split_response_code(text: str) -> tuple[int, str]:
    """``"550 go away"`` -> ``(550, "go away")``; text without a 4xx/5xx code -> 0."""
    m = _CODE.match(text)
    if not m:
        return 0, text
    return int(m.group(1)), text[m.end():]


def parse_output(output: bytes, default: str = "rejected") -> tuple[str, int, str]:
    """Read ``<<text>>`` / ``[[text]]`` lines from a filter program's output.

    Returns ``(response, response_code, reason)``: the first such line (with any
    leading 4xx/5xx code taken off) or ``default``, and the second line for the log
    (defaulting to the response).
    """
    text = output.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    found = []
    for line in text.split("\n"):
        for start, end in (("<<", ">>"), ("[[", "]]")):
            if line.startswith(start):
                stop = line.find(end, len(start))
                if stop >= 0:
                    found.append(printable(line[len(start):stop]))
                break
    response = found[0] if found and found[0] else default
    code, response = split_response_code(response)
    reason = found[1] if len(found) > 1 and found[1] else response
    return response, code, reason
