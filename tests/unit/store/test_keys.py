"""API keys: verified once, then remembered for a few seconds; revocation still bites."""

from __future__ import annotations

import pytest

from visionserve.errors import Unauthorized
from visionserve.store.keys import KeyStore


def test_a_known_key_costs_no_lookup_until_its_cache_expires(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    ingress, cli = KeyStore(url, cache_s=30), KeyStore(url)
    token, info = cli.create("client", rate_limit_per_minute=100)
    assert ingress.cached(token) is None
    assert ingress.authenticate(token).id == info.id
    lookups = []
    monkeypatch.setattr(ingress, "_lookup", lambda *a: lookups.append(a))
    assert ingress.authenticate(token).rate_limit_per_minute == 100
    assert ingress.cached(token) is not None and lookups == []
    # A wrong secret for the same id is never served from the cache.
    key_id = token.split("_")[1]
    monkeypatch.undo()
    with pytest.raises(Unauthorized):
        ingress.authenticate(f"vs_{key_id}_wrong")


def test_revocation_is_immediate_here_and_bounded_elsewhere(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    ingress, other = KeyStore(url, cache_s=5), KeyStore(url)
    token, info = ingress.create("client")
    ingress.authenticate(token)
    other.revoke(info.id)  # another process: the CLI
    assert ingress.authenticate(token).id == info.id  # within cache_s
    clock = [0.0]
    monkeypatch.setattr("visionserve.store.keys.time.monotonic", lambda: clock[0] + 1e9)
    with pytest.raises(Unauthorized, match="revoked"):
        ingress.authenticate(token)  # cache_s later
    monkeypatch.undo()
    token2, info2 = ingress.create("second")
    ingress.authenticate(token2)
    ingress.revoke(info2.id)  # the same store: at once
    with pytest.raises(Unauthorized, match="revoked"):
        ingress.authenticate(token2)
