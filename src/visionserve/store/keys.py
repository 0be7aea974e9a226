"""Bearer API keys, stored hashed.

A key reads ``vs_<id>_<secret>``: the id is stored in clear (it names the key in
logs and listings), the secret only as SHA-256 (it is 256 random bits, so a slow
password hash buys nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

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
            return _info(row)

    def authenticate(self, token: str) -> KeyInfo:
        """The key a bearer token names, or :class:`Unauthorized`."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise Unauthorized("Invalid API key")
        with session_scope(self.database_url) as s:
            row = s.get(ApiKey, parts[1])
            if row is None or not hmac.compare_digest(row.secret_hash, _hash(parts[2])):
                raise Unauthorized("Invalid API key")
            if row.revoked_at is not None:
                raise Unauthorized("API key has been revoked")
            return _info(row)
