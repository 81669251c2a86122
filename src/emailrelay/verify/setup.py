"""Building an instance's address verifier from its options."""

from __future__ import annotations

from emailrelay.options.parser import Settings
from emailrelay.verify import build_verifier
from emailrelay.verify.base import Verifier, VerifierConfig
from emailrelay.verify.spec import parse_spec


def verifier_from_settings(settings: Settings, domain: str) -> Verifier | None:
    """The ``--address-verifier``, or None without the option (validated already)."""
    if not settings.has("address-verifier"):
        return None
    spec, _ = parse_spec(settings.value("address-verifier") or "")
    return build_verifier(spec, VerifierConfig(
        domain=domain, timeout=float(settings.int("filter-timeout") or 0)))
