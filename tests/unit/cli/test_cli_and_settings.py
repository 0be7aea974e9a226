"""The admin CLI and settings resolution."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from visionserve.cli import app
from visionserve.settings import Settings, get_settings, settings_from
from visionserve.store.keys import KeyStore


def test_keys_create_list_revoke(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    created = json.loads(runner.invoke(app, ["keys", "create", "--name", "ci"]).stdout)
    token = created["key"]
    assert token.startswith(f"vs_{created['id']}_")
    store = KeyStore(get_settings().database_url)
    assert store.authenticate(token).name == "ci"
    listing = runner.invoke(app, ["keys", "list"]).stdout
    assert created["id"] in listing and "active" in listing and token not in listing
    assert runner.invoke(app, ["keys", "revoke", created["id"]]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list"]).stdout
    missing = runner.invoke(app, ["keys", "revoke", "nope"])
    assert missing.exit_code != 0
    get_settings.cache_clear()


def test_settings_nested_env_and_defaults(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("VISIONSERVE_BLOBS__BACKEND", "s3")
    monkeypatch.setenv("VISIONSERVE_BLOBS__S3__ENDPOINT_URL", "https://s3.eu-de.example")
    monkeypatch.setenv("VISIONSERVE_LIMITS__MAX_REQUEST_BYTES", "1024")
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'h' / 'visionserve.db'}"
    assert s.blobs.backend == "s3" and s.blobs.s3.endpoint_url == "https://s3.eu-de.example"
    assert s.limits.max_request_bytes == 1024
    assert s.model_home == tmp_path / "h" / "models"
    over = settings_from({"limits": {"rate_limit_per_minute": 7}})
    assert over.limits.rate_limit_per_minute == 7


def test_settings_cross_field_checks() -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        Settings.model_validate({"jobs": {"lease_s": 1, "heartbeat_s": 2}})


def test_signing_key_is_shared_within_a_home(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = Settings(home=tmp_path).signing_key
    b = Settings(home=tmp_path).signing_key
    assert a == b and len(a) == 64
    assert Settings(home=tmp_path / "other").signing_key != a


def test_overrides_deep_merge_with_env_and_move_derived_paths(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VISIONSERVE_JOBS__CONCURRENCY", "5")
    s = settings_from({"home": str(tmp_path), "jobs": {"lease_s": 60}})
    assert (s.jobs.concurrency, s.jobs.lease_s) == (5, 60)
    assert s.database_url == f"sqlite:///{tmp_path / 'visionserve.db'}"
    assert s.model_home == tmp_path / "models"
    # A replica rebuilding settings from the driver's snapshot sees the same values.
    assert settings_from(s.model_dump(mode="json")) == s
