"""A filter program: run with the content and envelope paths as its arguments."""

from __future__ import annotations

import logging
import os

from emailrelay.filters.base import FilterConfig, FilterJob
from emailrelay.filters.result import FilterResult, Verdict, failure, from_exit_code, parse_output
from emailrelay.process.child import run_program

log = logging.getLogger("emailrelay.filters")


class ExecutableFilter:
    def __init__(self, path: str, config: FilterConfig) -> None:
        self.path = path
        self.config = config
        self.id = os.path.basename(path)

    async def run(self, job: FilterJob) -> FilterResult:
        prefix = f"{self.config.kind} [{self.id}]"
        log.info("%s: [%s]: running %s", prefix, job.message_id, self.path)
        child = await run_program([self.path, str(job.content), str(job.envelope)],
                                  self.config.timeout)
        if child.exec_error is not None:
            log.warning("%s failed: cannot run %s: %s", prefix, self.path, child.exec_error)
            return failure("rejected", f"filter exec error: {child.exec_error.lower()}")
        if child.timed_out:
            log.warning("%s timed out after %gs", prefix, self.config.timeout)
            return failure("error", "timeout")
        assert child.exit_code is not None
        verdict, special = from_exit_code(child.exit_code, self.config.kind)
        if verdict is not Verdict.FAIL:
            return FilterResult(verdict, special)
        response, code, reason = parse_output(child.output)
        log.warning("%s failed: exit code %d: [%s]%s", prefix, child.exit_code, response,
                    f"({code})" if code else "")
        return failure(response, reason, code, special=special)

    def close(self) -> None:
        pass
