"""The default verifier (``exit:``): every address is a valid remote one."""

from __future__ import annotations

from emailrelay.verify.base import VerifierStatus, VerifyQuery


class AcceptAll:
    async def verify(self, query: VerifyQuery) -> VerifierStatus:
        return VerifierStatus.remote(query.address)

    def close(self) -> None:
        pass
