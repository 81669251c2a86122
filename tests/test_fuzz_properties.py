"""The fuzz targets (tests/fuzz/targets.py) as hypothesis properties.

CI runs a small budget per target; ``make fuzz`` sets FUZZ_EXAMPLES high (and runs the
coverage-guided atheris fuzzer on the same targets).  Inputs are arbitrary bytes or a
target's well-formed seed with bytes inserted, replaced and removed, so that the
properties reach past the first line.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import SEEDS, TARGETS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
NASTY = st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"\r\n.\r\n", b"\n.\r\n", b"\0", b" ",
                         b"<", b">", b":", b"\\", b'"', b"'", b"#", b";", b"=", b"+",
                         b"\x1c", b"\xff", b"\xc3\xa9", b"-", b"\t"])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        piece = draw(NASTY | st.binary(min_size=1, max_size=4))
        if action == "insert":
            data[at:at] = piece
        elif action == "replace":
            data[at:at + len(piece)] = piece
        else:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_survives_hostile_input(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=512) | mutated(SEEDS[name]))
    def check(data: bytes) -> None:
        target(data)

    check()


@pytest.mark.parametrize("name", list(TARGETS))
def test_well_formed_seeds_keep_the_invariants(name: str) -> None:
    for seed in SEEDS[name]:
        TARGETS[name](seed)
