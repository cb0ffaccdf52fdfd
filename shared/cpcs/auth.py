"""Tokens (the CPCS "hashtag"): random 32-byte secrets, stored only as SHA-256 digests.

Why a plain, fast digest and a lookup by it are safe here:

* The secret is 256 random bits from ``secrets``, not a password: there is no dictionary to try,
  so a slow hash (bcrypt, argon2) would add nothing but cost on every request. A stolen table of
  digests gives no token: finding one means a SHA-256 preimage.
* The database finds the row by the digest (an index, compared byte by byte, not in constant
  time). What a timing attacker could learn from that is how far the digest *of the token they
  sent* agrees with some stored digest. That says nothing usable about any stored token: knowing
  a digest, even whole, does not give a token whose digest it is, and the digest of each guess
  is unpredictable, so guesses cannot be steered towards a row.
* The row found is compared once more with ``hmac.compare_digest`` (constant time), so no code
  path of ours compares secrets with an early exit.
* Repeated failures from one client are slowed down (``cpcs.security.AuthThrottle``), and tokens
  never appear in logs (``cpcs.logs`` redacts them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh URL-safe secret to hand to a user once."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """The stored form of a token. A fast digest is right for random 256-bit secrets (see above)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def digests_match(a: str, b: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a.encode(), b.encode())
