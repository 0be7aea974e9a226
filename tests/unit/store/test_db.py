"""Sessions: SQLite transactions of one process queue on a lock of ours, not SQLite's sleeps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from visionserve.settings import JobSettings
from visionserve.store.db import _writer_lock, session_scope
from visionserve.store.queue import enqueue
from visionserve.store.records import Job


def test_concurrent_sqlite_writers_of_one_process_take_turns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    inside, most = 0, 0
    guard = threading.Lock()

    def accept(i: int) -> None:
        nonlocal inside, most
        with session_scope(url) as s:
            with guard:
                inside += 1
                most = max(most, inside)
            enqueue(s, surface="t", kind="t.k", payload={"i": i}, settings=JobSettings())
            with guard:
                inside -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(accept, range(200)))
    with session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 200
    assert most == 1  # one transaction at a time, handed over without a busy wait


def test_a_scope_may_open_another_in_its_thread_and_postgres_needs_no_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    lock = _writer_lock(url)
    assert _writer_lock(url) is lock  # one per database per process
    with lock, lock:  # re-entrant: no self-deadlock
        pass
    assert not hasattr(_writer_lock("postgresql://u@h/db"), "acquire")
