"""A verifier program, run as E-MailRelay runs it.

Arguments: the address, the MAIL FROM address ("" for VRFY), the client's
``ip:port``, ``--domain``, the authentication mechanism (lower case, ``none``) and the
authenticated name.  Exit 0 with two lines of output: a local mailbox (full name, then
mailbox name); exit 1 with two lines: a valid remote address (the second line is the
address to use); 100: drop the connection; 3: rejected for now (450); anything else:
rejected (550), the first line being the reply text and the second line the reason
for the log.
"""

from __future__ import annotations

import logging

from emailrelay.process.child import run_program
from emailrelay.util.printable import printable
from emailrelay.verify.base import VerifierConfig, VerifierStatus, VerifyQuery

log = logging.getLogger("emailrelay.verify")


def read_output(output: bytes) -> list[str]:
    text = output.decode("utf-8", "replace").rstrip(" \n\t")
    text = text.replace("\r\n", "\n").replace("\r", "")
    return [printable(line) for line in text.split("\n")] if text else []


def status_from_exit(recipient: str, code: int, lines: list[str]) -> VerifierStatus:
    if code == 0 and len(lines) >= 2:
        return VerifierStatus.local_mailbox(recipient, lines[1], lines[0])
    if code == 1 and len(lines) >= 2:
        return VerifierStatus.remote(recipient, lines[1])
    if code == 100:
        return VerifierStatus.aborted(recipient)
    response = lines[0] if lines and lines[0] else "mailbox unavailable"
    reason = lines[1] if len(lines) > 1 and lines[1] else f"exit code {code}"
    return VerifierStatus.invalid(recipient, response, reason, temporary=code == 3)


class ExecutableVerifier:
    def __init__(self, path: str, config: VerifierConfig) -> None:
        self.path = path
        self.config = config

    async def verify(self, query: VerifyQuery) -> VerifierStatus:
        argv = [self.path, *query.fields()]
        log.info("address verifier: executing %s", " ".join(printable(a) or '""' for a in argv))
        child = await run_program(argv, self.config.timeout)
        if child.exec_error is not None:
            log.warning("address verifier: exec error: %s: %s", self.path, child.exec_error)
            return VerifierStatus.invalid(query.address, "error", "exec error")
        if child.timed_out:
            log.warning("address verifier: timed out after %gs", self.config.timeout)
            return VerifierStatus.invalid(query.address, "timeout", "timeout", temporary=True)
        assert child.exit_code is not None
        lines = read_output(child.output)
        first, second = [*lines, "", ""][:2]
        log.info("address verifier: exit code %d: [%s] [%s]", child.exit_code, first, second)
        return status_from_exit(query.address, child.exit_code, lines)

    def close(self) -> None:
        pass
