"""Engine, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with ``BEGIN IMMEDIATE`` so that
several processes (ingress replicas, job workers) can share one file: a writer
takes the lock up front and waits ``busy_timeout`` instead of failing half-way.
PostgreSQL needs none of that and gets ``FOR UPDATE SKIP LOCKED`` in the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process, migrated to head on first use (never evicted)."""
    engine = make_engine(url)
    migrate(engine)
    return engine


@cache
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@cache
def _writer_lock(url: str) -> contextlib.AbstractContextManager[object]:
    """One SQLite transaction at a time per process; nothing to wait for on PostgreSQL.

    Every SQLite transaction takes the write lock up front (``BEGIN IMMEDIATE``). Two
    threads of one process that race for it would meet SQLite's busy handler, which
    sleeps 1, 2, 5, 10 ... 100 ms between tries: under concurrent requests most of a
    transaction's time went there. Queued on a lock of our own, the next thread starts
    the moment the previous one commits; other processes still meet the busy handler.
    """
    if normalize_url(url).startswith("sqlite"):
        return threading.RLock()  # re-entrant: a scope may open another in its thread
    return contextlib.nullcontext()


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on error."""
    with _writer_lock(url), _sessionmaker(url)() as session, session.begin():
        yield session


def ping(url: str) -> None:
    """One round trip to the database (readiness and health checks)."""
    with engine_for(url).connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Apply Alembic migrations up to head, serialised across processes."""
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727001)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727001)"))
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock_path = Path(str(engine.url.database) + ".migrate.lock")
        with lock_path.open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield
