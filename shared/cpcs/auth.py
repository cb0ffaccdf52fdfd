"""Tokens (the CPCS "hashtag"): random 32-byte secrets, stored only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh URL-safe secret to hand to a user once."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """The stored form of a token. A fast digest is right for random 256-bit secrets."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def digests_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
