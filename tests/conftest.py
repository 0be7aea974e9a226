"""Shared fixtures. Servers a test needs are started here on loopback, or reused.

In CI (``CI=true``) a ``services`` or ``ray`` test that skips is turned into a
failure: a missing Redis/PostgreSQL/S3/MQTT or Ray must never pass silently.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from cluster.profiles import use_ray_env
from visionserve.settings import Settings

use_ray_env()  # the shared test cluster runs as `make run` starts Ray

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.receiver",
    "tests.anomaly_fixtures",
]

POSTGRES_URL = os.environ.get(
    "VISIONSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("VISIONSERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    if strict and report.skipped and any(item.iter_markers(name=m) for m in ("services", "ray")):
        report.outcome = "failed"
        report.longrepr = f"services/ray test skipped in CI: {report.longrepr}"


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    """A test that changes VISIONSERVE_* env vars must not leak cached settings."""
    from visionserve.settings import get_settings

    yield
    get_settings.cache_clear()


@pytest.fixture
def library_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``caplog`` that sees our packages' records even after ``configure_logging``.

    A replica class built in a test calls ``configure_logging``, which stops our
    loggers propagating to the root logger where ``caplog`` listens.
    """
    import logging

    from visionserve.platform.logging import PACKAGES

    loggers = [logging.getLogger(name) for name in PACKAGES]
    loggers = [logger for logger in loggers if not logger.propagate]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    for logger in loggers:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """The one local Ray of the test session (Serve and Ray Data tests share it)."""
    from pathlib import Path

    import ray

    repo = Path(__file__).resolve().parents[1]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(repo), "RAY_USAGE_STATS_ENABLED": "0"}},
        # Application metrics on a Prometheus endpoint of our own (a free port: other Ray
        # clusters run on this machine), reported every second, Ray's floor, instead of
        # every 10 s: a metric reaches the endpoint about 1.3 s after it is recorded.
        _metrics_export_port=_free_port(),
        # What the Serve app reserves (about 10.5 GiB), whatever other processes hold
        # when the session starts: Ray would size the node from the memory free then.
        _memory=14 * 1024**3,
        _system_config={"metrics_report_interval_ms": 1000},
    )
    yield
    ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_metrics_url(ray_session: None) -> str:
    """The session Ray's Prometheus endpoint (application and Serve metrics)."""
    import ray

    node = ray.nodes()[0]
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server for this test session."""
    import sqlalchemy as sa

    schema = f"vs_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)],
)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Records tests run on both backends; each test starts from empty tables."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    import sqlalchemy as sa

    from visionserve.store.db import engine_for
    from visionserve.store.records import Base
    from visionserve.surfaces import import_records

    import_records()
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:  # type: ignore[no-untyped-def]
    """Settings for one test: its own home, loopback allowed, short leases."""
    return Settings.model_validate(
        {
            "home": str(tmp_path / "home"),
            "database_url": database_url,
            "egress": {"allow": ["127.0.0.1"]},
            "jobs": {"lease_s": 2.0, "heartbeat_s": 0.2, "poll_s": 0.05},
            "webhooks": {"backoff_base_s": 0.1, "backoff_max_s": 0.5, "max_attempts": 4},
        }
    )
