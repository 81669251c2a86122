"""``net:<address>``: a verification service over a long-lived connection.

The request is the six program arguments joined with ``|``; the answer comes back
the other way round: ``0|<mailbox>|<full name>`` (local), ``1|<address>`` (remote),
``2|<response>[|<reason>]`` (rejected), ``3|<response>[|<reason>]`` (rejected for now)
or ``100`` (drop the connection).
"""

from __future__ import annotations

import logging

from emailrelay.net.request_client import RequestClient, RequestError, parse_endpoint
from emailrelay.util.printable import printable
from emailrelay.verify.base import VerifierConfig, VerifierStatus, VerifyQuery

log = logging.getLogger("emailrelay.verify")


def parse_response(recipient: str, line: str) -> VerifierStatus:
    parts = [printable(p) for p in line.split("|")]
    code = parts[0].strip()
    if code == "100":
        return VerifierStatus.aborted(recipient)
    if code == "1" and len(parts) >= 2:
        return VerifierStatus.remote(recipient, parts[1])
    if code == "0" and len(parts) >= 2:
        return VerifierStatus.local_mailbox(recipient, parts[1], parts[2] if len(parts) > 2
                                            else "")
    if code in ("2", "3"):
        response = parts[1] if len(parts) > 1 and parts[1] else "mailbox unavailable"
        reason = parts[2] if len(parts) > 2 else response
        return VerifierStatus.invalid(recipient, response, reason, temporary=code == "3")
    return VerifierStatus.invalid(recipient, "mailbox unavailable",
                                  f"invalid verifier response: [{printable(line)}]")


class NetworkVerifier:
    def __init__(self, address: str, config: VerifierConfig) -> None:
        self.endpoint = parse_endpoint(address)
        self.client = RequestClient(self.endpoint, config.timeout)

    async def verify(self, query: VerifyQuery) -> VerifierStatus:
        log.info("verification request: [%s] (%s)", printable(query.address), query.client)
        try:
            line = await self.client.request("|".join(query.fields()))
        except RequestError as e:
            log.warning("address verifier: net:%s: %s", self.endpoint, e)
            return VerifierStatus.invalid(query.address, "cannot verify", str(e),
                                          temporary=True)
        log.info("verification response: [%s]", printable(line))
        return parse_response(query.address, line)

    def close(self) -> None:
        self.client.close()
