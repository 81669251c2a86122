"""The forwarding agent's settings, from one instance's options."""

from __future__ import annotations

from emailrelay.forward.address import parse_forward_address
from emailrelay.forward.agent import ForwardSettings
from emailrelay.forward.connection import Timeouts
from emailrelay.forward.retry import RetryPolicy
from emailrelay.options.parser import Settings
from emailrelay.options.switches import CLIENT_SMTP_DEFAULTS, parse_switches
from emailrelay.smtp.client import ClientConfig


def _seconds(s: Settings, name: str) -> float:
    return float(s.int(name) or 0)


def forward_settings(s: Settings, domain: str) -> ForwardSettings | None:
    """None when the instance has no --forward-to (nothing can be forwarded)."""
    target = s.value("forward-to")
    if not target:
        return None
    switches = parse_switches(s.values("client-smtp-config"), CLIENT_SMTP_DEFAULTS)
    client = ClientConfig(
        ehlo_name=domain,
        pipelining=switches["pipelining"],
        eightbit_strict=switches["eightbitstrict"],
        smtputf8_strict=switches["smtputf8strict"],
        binarymime_strict=switches["binarymimestrict"],
        must_accept_all_recipients=not s.flag("forward-to-some"),
    )
    return ForwardSettings(
        forward_to=parse_forward_address(target),
        client=client,
        timeouts=Timeouts(connection=_seconds(s, "connection-timeout"),
                          response=_seconds(s, "response-timeout"),
                          prompt=_seconds(s, "prompt-timeout")),
        interface=s.value("client-interface"),
        connections=s.int("forward-connections") or 1,
        retry=RetryPolicy(first_delay=_seconds(s, "retry-delay"),
                          max_delay=_seconds(s, "retry-max-delay"),
                          max_age=_seconds(s, "retry-max-age")),
        poll=_seconds(s, "poll"),
        unit=s.name,
    )
