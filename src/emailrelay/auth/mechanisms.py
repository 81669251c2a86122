"""``--server-auth-config`` and ``--client-auth-config``: which SASL mechanisms to use.

The value is a semicolon-separated list of items, each a letter, a colon and a
comma-separated list of mechanism names (case does not matter):

* ``m:`` the mechanisms allowed (an empty ``m:`` allows none), ``x:`` those denied;
* ``a:`` and ``d:`` the same once the session is encrypted with TLS.

As in E-MailRelay 2.6, when neither ``a:`` nor ``d:`` is given, ``m:`` and ``x:``
apply with and without TLS alike.  Filtering keeps the mechanisms' own order (strongest
first).  E-MailRelay's client also takes a bare mechanism name (``plain``) as an
allow-list; here the client takes a bare comma-separated list the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

LETTERS = ("M", "X", "A", "D")


@dataclass(frozen=True)
class MechanismConfig:
    allow: tuple[str, ...] | None = None  # m: (None: all)
    deny: tuple[str, ...] = ()  # x:
    secure_allow: tuple[str, ...] | None = None  # a:
    secure_deny: tuple[str, ...] = ()  # d:
    split: bool = False  # a: or d: given: they apply once secure, m:/x: before

    @classmethod
    def parse(cls, text: str, *, bare_list: bool = False) -> MechanismConfig:
        """Raise ValueError for an item that is not ``<letter>:<list>``."""
        lists: dict[str, tuple[str, ...]] = {}
        text = text.strip()
        if bare_list and text and ":" not in text:
            text = "m:" + text
        for item in (i.strip() for i in text.upper().split(";")):
            if not item:
                continue
            letter, colon, names = item.partition(":")
            if not colon or letter.strip() not in LETTERS:
                raise ValueError(f"invalid item \"{item}\": use m:, x:, a: or d: followed by "
                                 "a comma-separated list of mechanisms")
            lists.setdefault(letter.strip(),
                             tuple(n.strip() for n in names.split(",") if n.strip()))
        return cls(allow=lists.get("M"), deny=lists.get("X", ()),
                   secure_allow=lists.get("A"), secure_deny=lists.get("D", ()),
                   split="A" in lists or "D" in lists)

    def apply(self, mechanisms: list[str], secure: bool) -> list[str]:
        allow, deny = self.allow, self.deny
        if secure and self.split:
            allow, deny = self.secure_allow, self.secure_deny
        return [m for m in mechanisms
                if (allow is None or m.upper() in allow) and m.upper() not in deny]
