"""Bearer API keys, stored hashed.

A key reads ``vs_<id>_<secret>``: the id is stored in clear (it names the key in
logs and listings), the secret only as SHA-256 (it is 256 random bits, so a slow
password hash buys nothing).

A key that authenticated is remembered for ``cache_s`` (5 s) so that a busy client
costs no database round trip per request; revoking it through the same store takes
effect at once, through another process (the CLI, another replica) within ``cache_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from visionserve.errors import NotFound, Unauthorized
from visionserve.store.db import session_scope
from visionserve.store.records import ApiKey, utcnow

PREFIX = "vs"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    rate_limit_per_minute: int | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.created_at, row.revoked_at, row.rate_limit_per_minute)


class KeyStore:
    def __init__(self, database_url: str, cache_s: float = 5.0) -> None:
        self.database_url = database_url
        self.cache_s = cache_s
        # SHA-256 of the whole token -> (expiry on the monotonic clock, the key).
        self._cache: dict[str, tuple[float, KeyInfo]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, rate_limit_per_minute: int | None = None) -> tuple[str, KeyInfo]:
        """Make a key; the full token is returned once and never stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with session_scope(self.database_url) as s:
            row = ApiKey(
                id=key_id,
                name=name,
                secret_hash=_hash(secret),
                rate_limit_per_minute=rate_limit_per_minute,
            )
            s.add(row)
            s.flush()
            return f"{PREFIX}_{key_id}_{secret}", _info(row)

    def list(self) -> list[KeyInfo]:
        with session_scope(self.database_url) as s:
            return [_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, key_id: str) -> KeyInfo:
        with session_scope(self.database_url) as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"API key {key_id} not found")
            row.revoked_at = row.revoked_at or utcnow()
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[1].id != key_id}
        return _info(row)

    def cached(self, token: str) -> KeyInfo | None:
        """The key of a token that authenticated less than ``cache_s`` ago (no I/O)."""
        hit = self._cache.get(_hash(token))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def authenticate(self, token: str) -> KeyInfo:
        """The key a bearer token names, or :class:`Unauthorized`."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise Unauthorized("Invalid API key")
        hit = self.cached(token)
        if hit is not None:
            return hit
        info = self._lookup(parts[1], parts[2])
        digest, now = _hash(token), time.monotonic()
        with self._lock:
            if len(self._cache) > 10_000:  # bound it: drop what expired
                self._cache = {h: v for h, v in self._cache.items() if v[0] > now}
            self._cache[digest] = (now + self.cache_s, info)
        return info

    def _lookup(self, key_id: str, secret: str) -> KeyInfo:
        with session_scope(self.database_url) as s:
            row = s.get(ApiKey, key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
                raise Unauthorized("Invalid API key")
            if row.revoked_at is not None:
                raise Unauthorized("API key has been revoked")
            return _info(row)
