"""A short crash-consistency run in CI (``make crash`` runs 1,000 kills)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash import MODES, CrashRun

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_sigkill_at_every_kind_of_moment_loses_no_acknowledged_message(tmp_path: Path) -> None:
    figures = CrashRun(tmp_path, seed=7).run(kills=30)
    print(figures.summary())
    assert figures.ok, figures.summary() + f"\n{figures}"
    assert figures.acknowledged > 30
    assert set(figures.kills) == set(MODES)  # every kind of moment was hit at least once
