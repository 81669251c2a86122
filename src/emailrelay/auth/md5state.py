"""E-MailRelay's ``md5`` secrets: the HMAC-MD5 key state that ``emailrelay-passwd`` makes.

An ``md5`` secret is not a hash of the password: it is the MD5 state after the first
block of each of HMAC's two hashes, ``MD5(K xor ipad)`` and ``MD5(K xor opad)``, each
four little-endian 32-bit words (32 bytes in all, base64 in the secrets file, or eight
decimal numbers joined by dots in the old "dotted" form).  Resuming MD5 from those
states gives HMAC-MD5 of any challenge without knowing the password, which is how
CRAM-MD5 works with such a secret.

Written by hand because no library exposes MD5's compression function or lets a hash
resume from a saved state (``hashlib`` and ``hmac`` only start from the standard IV).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

BLOCK = 64
SECRET_SIZE = 32  # inner state + outer state
_MASK = 0xFFFFFFFF
_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
_CONSTANTS = [int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64)]
_DOTTED = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,10}){7}")

State = tuple[int, int, int, int]


def _compress(state: State, block: bytes) -> State:
    """MD5's compression function (RFC 1321 section 3.4) on one 64-byte block."""
    a, b, c, d = state
    words = struct.unpack("<16I", block)
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        f = (f + a + _CONSTANTS[i] + words[g]) & _MASK
        shift = _SHIFTS[i]
        a, d, c = d, c, b
        b = (b + ((f << shift) | (f >> (32 - shift)))) & _MASK
    return ((state[0] + a) & _MASK, (state[1] + b) & _MASK, (state[2] + c) & _MASK,
            (state[3] + d) & _MASK)


def resume(state: State, hashed: int, data: bytes) -> bytes:
    """Finish an MD5 that has already hashed ``hashed`` bytes (a multiple of 64)."""
    total = hashed + len(data)
    padded = data + b"\x80" + b"\0" * ((55 - total) % BLOCK) + struct.pack("<Q", total * 8)
    for offset in range(0, len(padded), BLOCK):
        state = _compress(state, padded[offset:offset + BLOCK])
    return struct.pack("<4I", *state)


def md5(data: bytes) -> bytes:
    """Plain MD5 through :func:`resume` (used to check it against ``hashlib``)."""
    return resume(_IV, 0, data)


def make_secret(password: bytes) -> bytes:
    """The 32-byte ``md5`` secret for a password, as ``emailrelay-passwd`` computes it."""
    key = hashlib.md5(password).digest() if len(password) > BLOCK else password
    key = key.ljust(BLOCK, b"\0")
    inner = _compress(_IV, bytes(k ^ 0x36 for k in key))
    outer = _compress(_IV, bytes(k ^ 0x5C for k in key))
    return struct.pack("<4I", *inner) + struct.pack("<4I", *outer)


def hmac_md5(secret: bytes, message: bytes) -> bytes:
    """HMAC-MD5 of ``message`` keyed by a 32-byte ``md5`` secret."""
    if len(secret) != SECRET_SIZE:
        raise ValueError("an md5 secret is 32 bytes")
    inner_state: State = struct.unpack("<4I", secret[:16])  # type: ignore[assignment]
    outer_state: State = struct.unpack("<4I", secret[16:])  # type: ignore[assignment]
    return resume(outer_state, BLOCK, resume(inner_state, BLOCK, message))


def is_dotted(text: str) -> bool:
    """True for the old form: eight decimal 32-bit numbers joined by dots."""
    return _DOTTED.fullmatch(text) is not None and all(
        int(n) <= _MASK for n in text.split("."))


def from_dotted(text: str) -> bytes:
    return struct.pack("<8I", *(int(n) for n in text.split(".")))


def to_dotted(secret: bytes) -> str:
    return ".".join(str(n) for n in struct.unpack("<8I", secret))
