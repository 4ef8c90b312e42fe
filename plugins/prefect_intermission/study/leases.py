"""Who is running a study right now: a lease with an expiry, kept in the study's database.

One execution at a time drives a study. It holds the study's lease and a heartbeat
thread renews it while the process lives, however slow its epochs are. A second
execution (a resume clicked while the first is still pausing, a duplicate run, a
restart after a crash) waits for the lease: a live owner renews it, a dead one lets
it expire. Taking a lease is one conditional UPDATE, so two executions can never
both hold it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from uuid import UUID

from sqlalchemy import Column, Float, MetaData, String, Table, delete, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from prefect_intermission._tables import create_tables
from prefect_intermission.settings import settings
from prefect_intermission.errors import IntermissionError

logger = logging.getLogger(__name__)

_metadata = MetaData()
_leases = Table(
    "intermission_study_leases",
    _metadata,
    Column("study_name", String(512), primary_key=True),
    Column("owner", String(512), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
)



class StudyBusyError(IntermissionError):
    """Another live execution is running the study."""


def lease_seconds_from_env() -> float:
    """How long a lease lasts without renewal (`INTERMISSION_LEASE_SECONDS`, default 30)."""
    return settings().lease_seconds


def trial_claim_resource(study_name: str, number: int) -> str:
    """The lease name under which one execution at a time trains trial `number`."""
    return f"{study_name} (trial {number})"


def trial_claim_owner_prefix(trial_run_id: UUID) -> str:
    """How the owner of a trial claim taken by trial run `trial_run_id` begins."""
    return f"trial run {trial_run_id} "


class StudyLease:
    """The exclusive right of one execution (`owner`) to run one study.

    Use it as a context manager after `acquire()`: a heartbeat renews it every
    quarter of its lifetime, `on_lost` is called if it was taken over anyway (the
    process stalled past the expiry), and it is released on exit.
    """

    def __init__(
        self,
        engine: Engine,
        study_name: str,
        owner: str,
        *,
        ttl_seconds: float | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.study_name = study_name
        self.owner = owner
        self.ttl = ttl_seconds if ttl_seconds is not None else lease_seconds_from_env()
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        create_tables(_metadata, engine)

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired, or already ours."""
        now = time.time()
        values = {"owner": self.owner, "expires_at": now + self.ttl, "renewed_at": now}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(_leases).values(study_name=self.study_name, **values))
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(_leases)
                .where(_leases.c.study_name == self.study_name)
                .where(or_(_leases.c.owner == self.owner, _leases.c.expires_at < now))
                .values(**values)
            )
        return taken.rowcount == 1

    def acquire(self, *, wait_seconds: float | None = None, wait_out_owners: str | None = None) -> None:
        """Take the lease, waiting up to `wait_seconds` (default: two lifetimes) for it.

        A live holder whose owner starts with `wait_out_owners` is waited for without a
        deadline: an earlier execution of the same flow run still finishing its pause
        (a Resume clicked early) gives the lease up at its next epoch boundary, however
        long that epoch is, and a dead one lets it expire.
        """
        wait = wait_seconds if wait_seconds is not None else 2 * self.ttl
        deadline = time.monotonic() + wait
        announced = False
        while not self.try_acquire():
            holder = self.holder()
            if holder and wait_out_owners and holder[0].startswith(wait_out_owners):
                deadline = time.monotonic() + wait
            if time.monotonic() >= deadline:
                raise StudyBusyError(
                    f"Study {self.study_name!r} is being run by another execution "
                    f"({holder[0] if holder else 'unknown'}), which renewed its lease "
                    f"{time.time() - holder[2]:.0f} s ago. Wait for it to finish or pause it "
                    "first; a crashed execution's lease expires by itself within "
                    f"{self.ttl:.0f} s." if holder else
                    f"Study {self.study_name!r} could not be leased; try again."
                )
            if not announced:
                logger.info("Study %r is held by %s; waiting for its lease.", self.study_name, holder)
                announced = True
            time.sleep(min(1.0, self.ttl / 4))

    def holder(self) -> tuple[str, float, float] | None:
        """(owner, expires_at, renewed_at) of the current lease, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_leases.c.owner, _leases.c.expires_at, _leases.c.renewed_at).where(
                    _leases.c.study_name == self.study_name
                )
            ).first()
        return (row[0], row[1], row[2]) if row else None

    def renew(self) -> bool:
        """Extend the lease; False if another execution holds it now."""
        now = time.time()
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(_leases)
                .where(_leases.c.study_name == self.study_name)
                .where(_leases.c.owner == self.owner)
                .values(expires_at=now + self.ttl, renewed_at=now)
            )
        return renewed.rowcount == 1

    def release(self) -> None:
        """Give the lease up so the next execution starts at once."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(_leases)
                .where(_leases.c.study_name == self.study_name)
                .where(_leases.c.owner == self.owner)
            )

    def __enter__(self) -> StudyLease:
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"intermission-lease-{self.study_name}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop renewing and give the lease up; a failure to release is logged, not raised."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.release()
        except Exception:
            logger.warning("Could not release the lease of study %r.", self.study_name, exc_info=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                still_ours = self.renew()
            except Exception:
                logger.warning("Could not renew the study's lease; retrying.", exc_info=True)
                continue
            if not still_ours:
                logger.error(
                    "Study %r: this execution lost its lease (it stalled past the expiry); "
                    "stopping at the next epoch boundary.", self.study_name,
                )
                if self.on_lost is not None:
                    self.on_lost()
                return


class LeaseLock:
    """A re-entrant lock on one named resource of a study, shared by every process.

    It is a short-lived lease on the resource's name: the processes that train one
    study's trials on several workers take it in turn (waiting for it), and a holder
    that died lets it expire. The lease row and one heartbeat thread are set up once
    and serve every acquisition. `on_acquired` runs each time this process takes it,
    before the guarded code (e.g. to reload state another process stored).
    """

    def __init__(
        self,
        engine: Engine,
        resource: str,
        owner: str,
        *,
        on_acquired: Callable[[], None] | None = None,
        ttl_seconds: float | None = None,
    ) -> None:
        self.resource = resource
        self.on_acquired = on_acquired
        self._lease = StudyLease(engine, resource, owner, ttl_seconds=ttl_seconds)
        self._local = threading.RLock()
        self._depth = 0
        self._held = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def owner(self) -> str:
        """Who takes the lock when this process holds it."""
        return self._lease.owner

    def __enter__(self) -> LeaseLock:
        self._local.acquire()
        try:
            if self._depth == 0:
                while not self._lease.try_acquire():
                    time.sleep(0.1)
                self._held.set()
                self._start_heartbeat()
                if self.on_acquired is not None:
                    self.on_acquired()
        except BaseException:
            if self._held.is_set():
                self._give_up()
            self._local.release()
            raise
        self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._give_up()
        finally:
            self._local.release()

    def _give_up(self) -> None:
        self._held.clear()
        try:
            self._lease.release()
        except Exception:  # it expires by itself
            logger.warning("Could not release the lock %r.", self.resource, exc_info=True)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._renew_while_held, name=f"intermission-lease-{self.resource}", daemon=True
            )
            self._heartbeat.start()

    def _renew_while_held(self) -> None:
        """Renew the lease every quarter of its lifetime while this process holds the lock."""
        while True:
            self._held.wait()
            time.sleep(self._lease.ttl / 4)
            if not self._held.is_set():
                continue
            try:
                self._lease.renew()  # a no-op once released: the row is gone
            except Exception:
                logger.warning("Could not renew the lock %r; retrying.", self.resource, exc_info=True)
