"""Pausing one trial while the others go on: hold requests kept in the study's database.

`intermission pause RUN --trial N` holds trial N: it stops at its next epoch boundary
with its checkpoint stored, and the study goes on with its other trials. Releasing
the hold (`intermission resume RUN --trial N`) continues it in the same run; a study
that resumes releases every hold, so held trials resume with the study.
"""

from __future__ import annotations

import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from prefect_intermission._tables import create_tables

_metadata = MetaData()
_holds = Table(
    "intermission_trial_holds",
    _metadata,
    Column("study_name", String(512), primary_key=True),
    Column("trial_number", Integer, primary_key=True),
    Column("requested_at", Float, nullable=False),
)


class TrialHolds:
    """The trials of one study that are asked to stay paused while the study runs."""

    def __init__(self, engine: Engine, study_name: str) -> None:
        self.engine = engine
        self.study_name = study_name
        create_tables(_metadata, engine)

    def hold(self, trial_number: int) -> bool:
        """Ask trial `trial_number` to pause; False if it was already held."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(_holds).values(
                        study_name=self.study_name, trial_number=trial_number, requested_at=time.time()
                    )
                )
        except IntegrityError:
            return False
        return True

    def release(self, trial_number: int) -> bool:
        """Let trial `trial_number` continue; False if it was not held."""
        with self.engine.begin() as conn:
            released = conn.execute(
                delete(_holds)
                .where(_holds.c.study_name == self.study_name)
                .where(_holds.c.trial_number == trial_number)
            )
        return released.rowcount == 1

    def release_all(self) -> set[int]:
        """Release every hold of the study; the trials that were held."""
        held = self.held()
        with self.engine.begin() as conn:
            conn.execute(delete(_holds).where(_holds.c.study_name == self.study_name))
        return held

    def held(self) -> set[int]:
        """The numbers of the trials held now."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_holds.c.trial_number).where(_holds.c.study_name == self.study_name)
            )
            return {row[0] for row in rows}
