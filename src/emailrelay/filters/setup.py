"""Building an instance's filter chains from its options."""

from __future__ import annotations

from pathlib import Path

from emailrelay.filters.base import FilterConfig
from emailrelay.filters.client import ClientFilters
from emailrelay.filters.result import CLIENT, ROUTING, SERVER
from emailrelay.filters.server import ServerFilters
from emailrelay.filters.spec import parse_chain
from emailrelay.options.parser import Settings
from emailrelay.spool.store import Spool


def filter_config(settings: Settings, spool: Spool, domain: str, kind: str) -> FilterConfig:
    delivery = settings.value("delivery-dir")
    return FilterConfig(kind=kind, spool=spool, timeout=float(settings.int("filter-timeout") or 0),
                        domain=domain, delivery_dir=Path(delivery) if delivery else spool.directory)


def server_filters(settings: Settings, spool: Spool, domain: str) -> ServerFilters | None:
    """The ``--filter`` chain, or None without the option (the options were validated)."""
    if not settings.values("filter"):
        return None
    specs, _ = parse_chain(settings.values("filter"))
    return ServerFilters(specs, filter_config(settings, spool, domain, SERVER))


def client_filters(settings: Settings, spool: Spool, domain: str, *,
                   routing: bool = False) -> ClientFilters | None:
    """The ``--client-filter`` chain (``routing``: as E-MailRelay's routing filter)."""
    if not settings.values("client-filter"):
        return None
    specs, _ = parse_chain(settings.values("client-filter"))
    return ClientFilters(specs, filter_config(settings, spool, domain,
                                              ROUTING if routing else CLIENT))
