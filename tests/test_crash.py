"""A short crash-consistency run in CI (``make crash`` runs 1,000 kills in every
configuration); it alternates plaintext with STARTTLS and AUTH on both sides."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.crash import MODES, Clients, CrashRun, make_message
from tests.support.fakesmtp import Received

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_sigkill_at_every_kind_of_moment_loses_no_acknowledged_message(tmp_path: Path) -> None:
    figures = CrashRun(tmp_path, seed=7, configs=("plain", "tls+auth")).run(kills=30)
    print(figures.summary())
    assert figures.ok, figures.summary() + f"\n{figures}"
    assert figures.acknowledged > 30
    assert set(figures.kills) == set(MODES)  # every kind of moment was hit at least once
    assert figures.configs == {"plain": 15, "tls+auth": 15}
    # The clients and the forwarding really used STARTTLS and AUTH under tls+auth.
    assert figures.acknowledged_as["tls+auth"] > 0 and figures.delivered_as["tls+auth"] > 0


def test_the_audit_catches_loss_corruption_and_unexplained_duplicates(tmp_path: Path) -> None:
    """The harness itself can fail: feed its audit a far side that lost, mangled and
    duplicated messages."""
    run = CrashRun(tmp_path)
    rng = random.Random(3)
    (one, _), (two, _), (three, _) = (make_message(f"c0-{n}", rng) for n in (1, 2, 3))
    mangled = three.replace(b"\r\n\r\n.", b"\r\n\r\n.x", 1)
    run.far.messages.extend([
        Received("a", ["b"], one, 1, confirmed=True),
        Received("a", ["b"], one, 2, confirmed=True),  # again, though its 250 was heard
        Received("a", ["b"], two, 2, confirmed=False),
        Received("a", ["b"], two, 3, confirmed=True),  # again after a lost 250: explained
        Received("a", ["b"], mangled, 3, confirmed=True),
    ])
    clients = Clients(0, 0, 0)
    clients.attempted = {"c0-1", "c0-2", "c0-3", "c0-4"}
    clients.acknowledged = {"c0-1", "c0-2", "c0-3", "c0-4"}
    run._audit(clients)
    figures = run.figures
    run.far.server.server_close()
    assert figures.lost == ["c0-4"]
    assert figures.corrupted == ["c0-3"]
    assert figures.duplicates == 2
    assert figures.unexplained_duplicates == ["c0-1"]
    assert not figures.ok
