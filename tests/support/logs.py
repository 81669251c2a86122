"""Capture the relay's log records in-process, whatever earlier tests did to logging."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """Lines ``"<level>: <message>"`` logged under ``emailrelay`` inside the block."""
    logger = logging.getLogger("emailrelay")
    handler, level = _Collector(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
