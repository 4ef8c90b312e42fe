"""Leases in the study's database: one execution runs a study, and a `LeaseLock` is held by one
process at a time."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine

from prefect_intermission.errors import ConfigurationError
from prefect_intermission.study import leases
from prefect_intermission.study.leases import LeaseLock, StudyBusyError, StudyLease


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


def test_a_lease_lock_taken_once_per_trial_sets_up_one_lease_and_one_heartbeat(tmp_path, monkeypatch):
    """The sampler lock is taken once per trial asked: its lease table and heartbeat are set up once,
    and that one heartbeat still renews the lease of a later, long hold."""
    engine = create_engine(f"sqlite:///{tmp_path}/leases.db")
    resource = "study (sampler)"
    theirs = leases.LeaseLock(engine, resource, "process b", ttl_seconds=1.2)
    observer = leases.StudyLease(engine, resource, "observer", ttl_seconds=1.2)
    created: list[int] = []
    create_all = leases._metadata.create_all
    monkeypatch.setattr(leases._metadata, "create_all", lambda *a, **k: (created.append(1), create_all(*a, **k)))
    heartbeats: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if thread.name.startswith("intermission-lease"):
            heartbeats.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    mine = leases.LeaseLock(engine, resource, "process a", ttl_seconds=1.2)
    for _ in range(20):
        with mine:
            assert observer.holder()[0] == "process a"
    got_it = threading.Event()

    def other_process() -> None:
        with theirs:
            got_it.set()

    with mine:  # held for over two lifetimes: only renewals keep the other owner out
        held_since = time.time()
        mine_created, mine_heartbeats = len(created), list(heartbeats)
        other = threading.Thread(target=other_process, daemon=True)
        other.start()
        assert not got_it.wait(3.0), "another owner took the lock while it was held"
        owner, _, renewed_at = observer.holder()
    other.join(timeout=10)
    assert got_it.is_set(), "the other owner did not get the lock once it was released"
    assert owner == "process a" and renewed_at - held_since > 1.2, "the lease was not renewed while held"
    assert mine_created <= 1, f"the lease table was set up {mine_created} times for 21 acquisitions"
    assert len(mine_heartbeats) <= 1, f"{len(mine_heartbeats)} heartbeat threads for 21 acquisitions"


def test_a_resumed_run_waits_out_its_own_earlier_execution_however_long_it_pauses(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/leases.db")
    pausing = StudyLease(engine, "study", "flow run R (pid 1, a)", ttl_seconds=1)
    pausing.acquire()
    with pausing:  # renewed by its heartbeat while the epoch in progress finishes
        resumed = StudyLease(engine, "study", "flow run R (pid 2, b)", ttl_seconds=1)
        waiting = threading.Thread(target=resumed.acquire, kwargs={"wait_out_owners": "flow run R "})
        started = time.monotonic()
        waiting.start()
        time.sleep(3.5)  # beyond the two lifetimes another run's execution would wait
        assert waiting.is_alive(), "the resumed execution gave up on its own run's pause"
    waiting.join(timeout=10)
    assert not waiting.is_alive() and time.monotonic() - started >= 3.5
    assert resumed.holder()[0] == "flow run R (pid 2, b)"


def test_another_run_gives_up_on_a_live_owner_after_two_lifetimes(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/leases.db")
    owner = StudyLease(engine, "study", "flow run R (pid 1, a)", ttl_seconds=1)
    owner.acquire()
    with owner:
        other = StudyLease(engine, "study", "flow run S (pid 2, b)", ttl_seconds=1)
        with pytest.raises(StudyBusyError, match="is being run by another execution"):
            other.acquire(wait_out_owners="flow run S ")


def test_a_lease_time_that_is_not_a_number_is_named_in_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERMISSION_LEASE_SECONDS", "30s")
    engine = create_engine(f"sqlite:///{tmp_path}/leases.db")
    with pytest.raises(ConfigurationError, match=r"INTERMISSION_LEASE_SECONDS must be a number of seconds, e.g. 30, but is '30s'"):
        StudyLease(engine, "study", "me")


@pytest.mark.parametrize("table", ["leases", "pause notices", "trial holds"])
def test_two_executions_creating_the_plugins_tables_at_the_same_moment_both_go_on(tmp_path, table):
    """The slower execution finds the table missing, then another creates it just before its
    own CREATE (reproduced exactly: a real second engine creates it at that instant)."""
    from sqlalchemy import event

    from prefect_intermission.pausing import holds, notices

    module, opened = {"leases": (leases, lambda e: StudyLease(e, "s", "second")),
                      "pause notices": (notices, lambda e: notices.PauseNotices(e, "s")),
                      "trial holds": (holds, lambda e: holds.TrialHolds(e, "s"))}[table]
    url = f"sqlite:///{tmp_path}/study.db"
    target = next(iter(module._metadata.tables.values()))
    faster = create_engine(url)

    raced: list[bool] = []

    def the_other_creates_it_first(*args, **kwargs):
        if not raced:
            raced.append(True)
            target.create(faster)

    event.listen(target, "before_create", the_other_creates_it_first)
    try:
        opened(create_engine(url))  # raised "table ... already exists" before
    finally:
        event.remove(target, "before_create", the_other_creates_it_first)
    assert raced == [True]
