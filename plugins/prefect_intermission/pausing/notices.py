"""How a study's trial runs learn of its pause: a notice in the study's own database.

The study run posts a notice the moment it is asked to pause (whatever asked), and a
trial run posts one when its pause rule is met or its own run is paused. Every trial
run of the study reads the notice from that database (no Prefect API request) several
times a second and stops at its next epoch boundary. A notice names the study execution
it is for, so the notice of a pause already carried out never stops a resumed study.
"""

from __future__ import annotations

import time

from sqlalchemy import Column, Float, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from prefect_intermission._tables import create_tables

_metadata = MetaData()
_notices = Table(
    "intermission_pause_notices",
    _metadata,
    Column("study_name", String(512), primary_key=True),
    Column("execution", String(512), nullable=False),
    Column("reason", String(2048), nullable=False),
    Column("posted_at", Float, nullable=False),
)


class PauseNotices:
    """The pause notice of one study: at most one, for the execution that pauses."""

    def __init__(self, engine: Engine, study_name: str) -> None:
        self.engine = engine
        self.study_name = study_name
        create_tables(_metadata, engine)

    def post(self, execution: str, reason: str) -> None:
        """Tell the trial runs of study execution `execution` to pause, for `reason`.

        The first notice for an execution stands: its reason is why the study paused.
        """
        values = {"execution": execution, "reason": reason, "posted_at": time.time()}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(_notices).values(study_name=self.study_name, **values))
            return
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            conn.execute(
                update(_notices)
                .where(_notices.c.study_name == self.study_name)
                .where(_notices.c.execution != execution)
                .values(**values)
            )

    def reason_for(self, execution: str) -> str | None:
        """Why study execution `execution` pauses, or None when it was not asked to."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_notices.c.execution, _notices.c.reason).where(_notices.c.study_name == self.study_name)
            ).first()
        return row[1] if row is not None and row[0] == execution else None
