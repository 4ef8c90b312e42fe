"""The plugin's own tables in the study's database (leases, pause notices), created on first use."""

from __future__ import annotations

import time

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

#: Tries at creating the tables while other processes create them too.
CREATE_ATTEMPTS = 5


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """Create the tables of `metadata` that the database of `engine` lacks.

    Two executions opening a new study at the same moment both find a table missing and
    both create it; the slower one's CREATE fails ("already exists" on SQLite, a duplicate
    on PostgreSQL). The table is there then, so looking again succeeds; any other failure
    is raised once the tries are spent.
    """
    for attempt in range(CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except DBAPIError:
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
