"""``net:<address>``: ask a network service about each message.

The request is the content file's path on one line; an answer starting with ``ok``
accepts the message and anything else rejects it: ``[<4xx|5xx> ]<response>[<TAB>
<reason>]``.  One connection serves message after message (see
:class:`~emailrelay.net.request_client.RequestClient`).
"""

from __future__ import annotations

import logging

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import OK, FilterResult, failure, split_response_code
from emailrelay.net.request_client import RequestClient, RequestError, parse_endpoint
from emailrelay.util.printable import printable

log = logging.getLogger("emailrelay.filters")


class NetworkFilter:
    def __init__(self, address: str, config: FilterConfig) -> None:
        self.endpoint = parse_endpoint(address)
        self.id = str(self.endpoint)
        self.config = config
        self.client = RequestClient(self.endpoint, config.timeout)

    async def run(self, job: FilterJob) -> FilterResult:
        try:
            line = await self.client.request(str(job.content))
        except RequestError as e:
            log.warning("%s [net:%s]: request failed: %s", self.config.kind, self.id, e)
            return failure("failed", str(e))
        log.info("%s [net:%s]: [%s]: response: [%s]", self.config.kind, self.id,
                 job.message_id, printable(line))
        if line.startswith("ok"):
            return OK
        text, tab, detail = line.partition("\t")
        code, response = split_response_code(printable(text))
        return failure(response or "rejected", printable(detail) if tab else response, code)

    def close(self) -> None:
        self.client.close()
