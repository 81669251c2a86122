"""What every filter is given and must provide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from emailrelay.filters.result import SERVER, FilterResult
from emailrelay.spool.store import Spool


@dataclass(frozen=True)
class FilterConfig:
    """Settings shared by the filters of one chain."""

    kind: str  # result.SERVER, result.CLIENT or result.ROUTING
    spool: Spool
    timeout: float  # --filter-timeout (0: none)
    domain: str  # --domain
    delivery_dir: Path  # --delivery-dir, else the spool directory

    @property
    def server(self) -> bool:
        return self.kind == SERVER


@dataclass(frozen=True)
class FilterJob:
    """One message to filter: its id and its two files.

    The envelope is ``.envelope.new`` for server filters and ``.envelope.busy`` for
    client filters; a filter may edit both files or remove them.
    """

    message_id: str
    content: Path
    envelope: Path


class Filter(Protocol):
    id: str  # shown in logs, e.g. the program's file name or "deliver:"

    async def run(self, job: FilterJob) -> FilterResult: ...

    def close(self) -> None: ...
