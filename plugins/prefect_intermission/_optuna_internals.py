"""The one module that uses Optuna's private API.

A study's state beyond what `Study` and `Trial` publish (its system attributes, a trial's
intermediate values written again after a pause, a trial reattached by its number) is
read and written through the study's storage, which Optuna keeps as `Study._storage`, with
the ids it keeps as `Study._study_id` and `Trial._trial_id` / `FrozenTrial._trial_id`.
Each is read here, and only here.

`check_optuna_internals()` verifies that each private name still exists on a real
in-memory study and trial; tests/unit/test_optuna_internals.py runs it, so an Optuna release
that moves one fails there, naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_intermission.errors import IntermissionError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

#: (what the name is read on, the private name)
_PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("optuna.Study", "_storage"),
    ("optuna.Study", "_study_id"),
    ("optuna.Trial", "_trial_id"),
    ("optuna.trial.FrozenTrial", "_trial_id"),
)


class OptunaInternalsChanged(IntermissionError):
    """The installed Optuna no longer has a private name prefect-intermission relies on."""


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (`Study._storage`)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage (`Study._study_id`)."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its study's storage (`Trial._trial_id`, `FrozenTrial._trial_id`)."""
    return trial._trial_id


def check_optuna_internals() -> None:
    """Verify that the installed Optuna still has each private name this module reads.

    Raises:
        OptunaInternalsChanged: A name is gone; the message names each one.
    """
    import optuna

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    study.tell(trial, 0.0)
    on = {"optuna.Study": study, "optuna.Trial": trial, "optuna.trial.FrozenTrial": study.trials[0]}
    problems = [f"{owner}.{name} is gone" for owner, name in _PRIVATE_ATTRIBUTES if not hasattr(on[owner], name)]
    if not problems and storage_of(study).get_trial(trial_id_of(trial)).number != trial.number:
        problems.append("Study._storage.get_trial(Trial._trial_id) no longer reads that trial")
    if problems:
        raise OptunaInternalsChanged(
            f"The installed Optuna ({optuna.__version__}) changed private API prefect-intermission "
            f"relies on: {'; '.join(problems)}. Adapt prefect_intermission/_optuna_internals.py."
        )
