"""Address verifiers (``--address-verifier``): which recipients are accepted, which are
local mailboxes (``To-Local``) and which are forwarded (``To-Remote``).

* ``exit:<n>`` (and no option at all): every address is a valid remote one;
* a program (or ``file:<path>``), run with E-MailRelay's six arguments;
* ``net:<address>``: a network service speaking the pipe-delimited protocol;
* ``account:<options>``: the built-in check against the system's user accounts.
"""

from __future__ import annotations

from emailrelay.verify.base import Verifier, VerifierConfig
from emailrelay.verify.spec import VerifierSpec


def build_verifier(spec: VerifierSpec, config: VerifierConfig) -> Verifier:
    if spec.kind == "exit":
        from emailrelay.verify.internal import AcceptAll
        return AcceptAll()
    if spec.kind == "net":
        from emailrelay.verify.network import NetworkVerifier
        return NetworkVerifier(spec.value, config)
    if spec.kind == "account":
        from emailrelay.verify.account import AccountVerifier
        return AccountVerifier(spec.value, config)
    from emailrelay.verify.executable import ExecutableVerifier
    return ExecutableVerifier(spec.value, config)
