"""Resource ids and API tokens.

Ids carry a prefix naming their kind (`cmp_`, `lbl_`…), so a key on the change feed says
what it identifies. A token is 32 random bytes; only its SHA-256 is stored, which is
enough for a secret with that much entropy and lets a lookup find it by hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

__all__ = ["TOKEN_PREFIX", "hash_token", "new_id", "new_token"]

TOKEN_PREFIX = "hrd_"


def new_id(prefix: str) -> str:
    """Return a new id such as `cmp_3f2a…` for the kind named by `prefix`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
