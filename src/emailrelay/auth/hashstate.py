"""E-MailRelay's hashed secrets: the HMAC key states that ``emailrelay-passwd`` makes.

A hashed (``md5``, ``sha1``, ``sha256``) secret is not a hash of the password: it is the
hash function's state after the first block of each of HMAC's two hashes,
``H(K xor ipad)`` and ``H(K xor opad)``, each state word written as four little-endian
bytes (E-MailRelay's encoding, whatever the hash's own byte order).  Resuming the hash
from those states gives the HMAC of any challenge without knowing the password, which
is how CRAM-MD5 (and CRAM-SHA1, CRAM-SHA256) work with such secrets.  ``md5`` secrets
also have an old "dotted" form: eight decimal numbers joined by dots.

Written by hand because no library exposes the compression functions or lets a hash
resume from a saved state (``hashlib`` and ``hmac`` only start from the standard IV).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 64
_MASK = 0xFFFFFFFF
_DOTTED = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,10}){7}")

State = tuple[int, ...]


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


# -- MD5 (RFC 1321) ---------------------------------------------------------------------------

_MD5_SHIFTS = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4
_MD5_K = [int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64)]


def _md5_compress(state: State, block: bytes) -> State:
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
        f = (f + a + _MD5_K[i] + words[g]) & _MASK
        a, d, c = d, c, b
        b = (b + _rotl(f, _MD5_SHIFTS[i])) & _MASK
    return tuple((x + y) & _MASK for x, y in zip(state, (a, b, c, d), strict=True))


# -- SHA-1 and SHA-256 (FIPS 180-4) ------------------------------------------------------------

def _sha1_compress(state: State, block: bytes) -> State:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 80):
        w.append(_rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1))
    a, b, c, d, e = state
    for i in range(80):
        if i < 20:
            f, k = (b & c) | (~b & d), 0x5A827999
        elif i < 40:
            f, k = b ^ c ^ d, 0x6ED9EBA1
        elif i < 60:
            f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
        else:
            f, k = b ^ c ^ d, 0xCA62C1D6
        a, b, c, d, e = (_rotl(a, 5) + (f & _MASK) + e + k + w[i]) & _MASK, a, _rotl(b, 30), c, d
    return tuple((x + y) & _MASK for x, y in zip(state, (a, b, c, d, e), strict=True))


def _primes(count: int) -> list[int]:
    found: list[int] = []
    n = 2
    while len(found) < count:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found


def _icbrt(n: int) -> int:
    x = 1 << ((n.bit_length() + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


# The fractional parts of square and cube roots of the first primes, exactly.
_SHA256_IV = tuple(math.isqrt(p << 64) & _MASK for p in _primes(8))
_SHA256_K = [_icbrt(p << 96) & _MASK for p in _primes(64)]


def _sha256_compress(state: State, block: bytes) -> State:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _MASK)
    a, b, c, d, e, f, g, h = state
    for i in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g))
              + _SHA256_K[i] + w[i]) & _MASK
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _MASK
        a, b, c, d, e, f, g, h = (t1 + t2) & _MASK, a, b, c, (d + t1) & _MASK, e, f, g
    return tuple((x + y) & _MASK
                 for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


# -- the hashes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Hash:
    name: str
    iv: State
    compress: Callable[[State, bytes], State]
    order: str  # "<" or ">": the hash's own word and length byte order

    @property
    def words(self) -> int:
        return len(self.iv)

    @property
    def secret_size(self) -> int:
        return 2 * 4 * self.words

    def resume(self, state: State, hashed: int, data: bytes) -> bytes:
        """Finish a hash that has already hashed ``hashed`` bytes (a multiple of 64)."""
        total = hashed + len(data)
        padded = (data + b"\x80" + b"\0" * ((55 - total) % BLOCK)
                  + struct.pack(self.order + "Q", total * 8))
        for offset in range(0, len(padded), BLOCK):
            state = self.compress(state, padded[offset:offset + BLOCK])
        return struct.pack(f"{self.order}{self.words}I", *state)


HASHES: dict[str, _Hash] = {
    "md5": _Hash("md5", (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476), _md5_compress, "<"),
    "sha1": _Hash("sha1", (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0),
                  _sha1_compress, ">"),
    "sha256": _Hash("sha256", _SHA256_IV, _sha256_compress, ">"),
}


def _hash(name: str) -> _Hash:
    try:
        return HASHES[name.lower()]
    except KeyError:
        raise ValueError(f"no hashed secrets for {name}") from None


def digest(name: str, data: bytes) -> bytes:
    """The plain hash through the hand-written code (used to check it against ``hashlib``)."""
    h = _hash(name)
    return h.resume(h.iv, 0, data)


def secret_size(name: str) -> int:
    return _hash(name).secret_size


def make_secret(password: bytes, name: str = "md5") -> bytes:
    """The secret for a password, as ``emailrelay-passwd --hash <name>`` computes it."""
    h = _hash(name)
    key = hashlib.new(h.name, password).digest() if len(password) > BLOCK else password
    key = key.ljust(BLOCK, b"\0")
    inner = h.compress(h.iv, bytes(k ^ 0x36 for k in key))
    outer = h.compress(h.iv, bytes(k ^ 0x5C for k in key))
    return struct.pack(f"<{2 * h.words}I", *inner, *outer)


def hmac_from_secret(secret: bytes, message: bytes, name: str = "md5") -> bytes:
    """HMAC of ``message`` keyed by a hashed secret (the same as HMAC with the password)."""
    h = _hash(name)
    if len(secret) != h.secret_size:
        raise ValueError(f"an {h.name} secret is {h.secret_size} bytes")
    words = struct.unpack(f"<{2 * h.words}I", secret)
    inner = h.resume(words[:h.words], BLOCK, message)
    return h.resume(words[h.words:], BLOCK, inner)


def is_dotted(text: str) -> bool:
    """True for the old md5 form: eight decimal 32-bit numbers joined by dots."""
    return _DOTTED.fullmatch(text) is not None and all(
        int(n) <= _MASK for n in text.split("."))


def from_dotted(text: str) -> bytes:
    return struct.pack("<8I", *(int(n) for n in text.split(".")))


def to_dotted(secret: bytes) -> str:
    return ".".join(str(n) for n in struct.unpack("<8I", secret))
