"""Leases in the study's database: a `LeaseLock` is held by one process at a time."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine

from prefect_intermission.leases import LeaseLock


def test_a_lease_lock_excludes_other_owners_until_released_and_is_reentrant(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/leases.db")
    taken: list[str] = []
    mine = LeaseLock(engine, "study (sampler)", "process a", on_acquired=lambda: taken.append("a"))
    theirs = LeaseLock(engine, "study (sampler)", "process b", on_acquired=lambda: taken.append("b"))
    got_it = threading.Event()

    def other_process() -> None:
        with theirs:
            got_it.set()

    with mine:
        with mine:  # re-entrant: the same process takes it again without waiting
            other = threading.Thread(target=other_process)
            other.start()
            assert not got_it.wait(1.0), "another owner took the lock while it was held"
        assert not got_it.wait(0.5), "released by the inner exit only"
    other.join(timeout=10)
    assert got_it.is_set()
    assert taken == ["a", "b"]  # on_acquired once per outermost acquisition
