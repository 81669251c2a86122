"""The benchmark package's own logic (no timing here: figures come from ``make bench``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.accept import PIPELINING, SOURCE_REUSE
from bench.common import AIOSMTPD, EMAILRELAY, KB, MB, Result, table
from bench.footprint import IN_AND_OUT, STARTUP
from bench.forward import DRAIN, PROXY
from bench.scaling import MESSAGES, Point, message_count, plot
from bench.targets import TARGETS, check


def test_percentiles_and_rate() -> None:
    r = Result("x", messages=200, seconds=4.0, latencies=[i / 1000 for i in range(1, 101)])
    assert r.rate == 50
    assert r.percentile(50) == 0.051
    assert r.percentile(99) == 0.1
    assert Result("x").percentile(99) is None


def test_table_columns_line_up() -> None:
    lines = table([Result("accept", messages=1000, seconds=0.5, peak_rss_kb=2048),
                   Result("start-up", seconds=0.3, note="median")]).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert "| 2,000 " in lines[2] and "| 2.0 " in lines[2]
    assert lines[3].split("|")[5].strip() == "-"  # no messages: no rate


def _run(accept: float, aiosmtpd: float, drain: float, proxy: float, p99: float,
         rss_mb: float, growth_mb: float, startup: float) -> list[Result]:
    def rate(name: str, value: float, server: str = EMAILRELAY, note: str = "",
             latencies: list[float] | None = None) -> Result:
        return Result(name, server, int(value * 10), 10.0, latencies or [],
                      int(rss_mb * 1024), note)

    return [rate(SOURCE_REUSE.name, accept), rate(SOURCE_REUSE.name, aiosmtpd, AIOSMTPD),
            rate(PIPELINING.name, accept, latencies=[p99] * 100),
            rate(PIPELINING.name, aiosmtpd, AIOSMTPD), rate(DRAIN, drain),
            rate(PROXY, proxy, note="smtp-source -s 8, conn/msg"),
            Result(IN_AND_OUT, EMAILRELAY, 1, 3.0, figures={"rss_growth_mb": growth_mb}),
            Result(STARTUP, EMAILRELAY, seconds=startup)]


def test_targets_met() -> None:
    lines = check(_run(accept=3000, aiosmtpd=1000, drain=1200, proxy=900, p99=0.015,
                       rss_mb=30, growth_mb=2, startup=0.3))
    assert len(lines) == 1 + len(TARGETS)
    assert all(line.startswith("  met ") for line in lines[1:]), lines


def test_targets_missed() -> None:
    lines = check(_run(accept=2000, aiosmtpd=1500, drain=900, proxy=700, p99=0.025,
                       rss_mb=45, growth_mb=8, startup=0.7))
    assert all(line.startswith("  NOT MET ") for line in lines[1:]), lines
    assert "2,000/s with smtp-source -s 8 -d" in lines[1]
    assert "1.3x" in lines[2]


def test_targets_not_run() -> None:
    assert all(line.startswith("  not run ") for line in check([])[1:])


@pytest.mark.parametrize("size", [1 * KB, 10 * KB, 100 * KB, 1 * MB, 10 * MB])
@pytest.mark.parametrize("connections", [1, 8, 64, 256])
def test_scaling_message_counts(size: int, connections: int) -> None:
    for fewer in (1, 8):
        count = message_count(size, connections, fewer)
        assert count % connections == 0 and count >= connections
        assert count <= max(MESSAGES, connections)
        assert count * size <= max(160 * MB, connections * size)


def test_scaling_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    found = [Point(series, axis, c, s, 100, 1.0, 100.0 * c, 1.0,
                   None if series == "drain" else 5.0 * c, 30.0, "")
             for series in ("accept", "drain", "proxy")
             for axis, c, s in [("concurrency", 1, 10 * KB), ("concurrency", 8, 10 * KB),
                                ("size", 8, 1 * KB), ("size", 8, 10 * MB)]]
    plot(found, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
