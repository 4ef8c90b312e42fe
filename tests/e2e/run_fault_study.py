"""A small study for the fault-injection suite: `python run_fault_study.py NAME STORAGE CHECKPOINTS`."""

import sys

from prefect_intermission import optimize_study

if __name__ == "__main__":
    study_name, storage, checkpoints = sys.argv[1:4]
    optimize_study(
        study_name=study_name,
        objective="tests.objectives:slow_classifier",
        storage=storage,
        checkpoints=checkpoints,
        n_trials=4,
        max_epochs=5,
        max_concurrent_trials=1,
        seed=3,
    )
