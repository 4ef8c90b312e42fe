"""A study run as a plain Python script, outside any deployment: `python run_study_script.py NAME STORAGE CKPT`."""

import sys

from prefect_intermission import optimize_study

if __name__ == "__main__":
    study_name, storage, checkpoints = sys.argv[1:4]
    optimize_study(
        study_name=study_name,
        objective="tests.objectives:slow_classifier",
        storage=storage,
        checkpoints=checkpoints,
        n_trials=2,
        max_epochs=12,
        seed=1,
    )
