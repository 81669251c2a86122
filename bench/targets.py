"""The targets of issue 12, checked against one run's table, beside E-MailRelay 2.6's
figures from the issue (C++, one epoll thread, no fsync, on this kind of machine)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.accept import EMAILRELAY_WORKERS, PIPELINING, SOURCE_REUSE
from bench.common import AIOSMTPD, EMAILRELAY, Result
from bench.footprint import IN_AND_OUT, STARTUP
from bench.forward import DRAIN, PROXY

Found = tuple[str, bool]  # what was measured, in words; whether the target is met


class _Table:
    def __init__(self, results: list[Result]) -> None:
        self.results = results

    def get(self, name: str, server: str = EMAILRELAY, note: str = "") -> Result | None:
        for r in self.results:
            if r.name == name and r.server == server and note in r.note and r.messages:
                return r
        return None

    def best(self, name: str) -> Result | None:
        """Our relay's faster configuration for a load (one process or --workers)."""
        found = [r for r in (self.get(name), self.get(name, EMAILRELAY_WORKERS)) if r]
        return max(found, key=lambda r: r.rate, default=None)


@dataclass
class Target:
    text: str
    reference: str  # E-MailRelay 2.6
    measure: Callable[[_Table], Found | None]  # None: not measured in this run


def _accept(t: _Table) -> Found | None:
    source, ours = t.best(SOURCE_REUSE.name), t.best(PIPELINING.name)
    if source is None:
        return None
    also = f"; our pipelining client {ours.rate:,.0f}/s ({ours.server})" if ours else ""
    return (f"{source.rate:,.0f}/s with smtp-source -s 8 -d ({source.server}){also}",
            source.rate >= 2500)


def _versus_aiosmtpd(t: _Table) -> Found | None:
    ratios = []
    for load in (SOURCE_REUSE, PIPELINING):
        ours, theirs = t.best(load.name), t.get(load.name, AIOSMTPD)
        if ours and theirs:
            ratios.append((load, ours.rate / theirs.rate))
    if not ratios:
        return None
    return "; ".join(f"{ratio:.1f}x ({'smtp-source -d' if load.source else 'our client'})"
                     for load, ratio in ratios), all(ratio >= 2 for _, ratio in ratios)


def _drain(t: _Table) -> Found | None:
    drains = [r for r in t.results if r.name == DRAIN and r.server == EMAILRELAY and r.messages]
    if not drains:
        return None
    best = max(drains, key=lambda r: r.rate)
    return f"{best.rate:,.0f}/s ({best.note})", best.rate >= 1000


def _proxy(t: _Table) -> Found | None:
    proxy = t.get(PROXY, note="smtp-source")
    return None if proxy is None else (f"{proxy.rate:,.0f}/s with smtp-source -s 8",
                                       proxy.rate >= 800)


def _p99(t: _Table) -> Found | None:
    ours = t.get(PIPELINING.name)
    p99 = ours.percentile(99) if ours else None
    return None if p99 is None else (f"{p99 * 1000:.1f} ms", p99 <= 0.020)


def _rss(t: _Table) -> Found | None:
    peaks = [r.peak_rss_kb / 1024 for r in t.results if r.server == EMAILRELAY
             and r.name.startswith("accept:") and r.peak_rss_kb]
    return None if not peaks else (f"{max(peaks):.1f} MB (highest of the accept runs)",
                                   max(peaks) <= 40)


def _big(t: _Table) -> Found | None:
    big = t.get(IN_AND_OUT)
    growth = big.figures.get("rss_growth_mb") if big else None
    return None if growth is None else (f"+{growth:.1f} MB", growth <= 5)


def _startup(t: _Table) -> Found | None:
    for r in t.results:
        if r.name == STARTUP and r.seconds:
            return f"{r.seconds:.3f} s", r.seconds < 0.5
    return None


TARGETS = [
    Target("accept, durable, 8 connections, 10 KB: >= 2,500 msg/s",
           "about 1,800/s (some runs 7,800), no fsync", _accept),
    Target("accept: >= 2x aiosmtpd 1.4.6 writing the same files without fsync",
           "-", _versus_aiosmtpd),
    Target("forward: drain 2,000 messages to smtp-sink >= 1,000 msg/s",
           "22/s (795/s with TCP_NODELAY forced)", _drain),
    Target("forward: proxy end to end >= 800 msg/s",
           "22/s (414/s with TCP_NODELAY forced)", _proxy),
    Target("latency: p99 final dot to 250 under the accept load <= 20 ms", "-", _p99),
    Target("memory: peak RSS under the accept load <= 40 MB", "7.5 MB", _rss),
    Target("memory: a 200 MB message in and out adds <= 5 MB",
           "50 MB in 0.21 s, RSS unchanged", _big),
    Target("start-up to listening < 0.5 s", "-", _startup),
]


def check(results: list[Result]) -> list[str]:
    """One line per target: met or not, what was measured, E-MailRelay's figure."""
    found = _Table(results)
    lines = ["targets (issue 12)          measured here; E-MailRelay 2.6 in brackets"]
    for target in TARGETS:
        measured = target.measure(found)
        if measured is None:
            lines.append(f"  not run  {target.text}")
            continue
        what, met = measured
        reference = "" if target.reference == "-" else f" [{target.reference}]"
        lines.append(f"  {'met    ' if met else 'NOT MET'}  {target.text}: {what}{reference}")
    return lines
