"""The study flow served from a script (`optimize_study.serve`), as docs/concepts/pausing-and-resuming.md shows it:

    python serve_study_script.py DEPLOYMENT STUDY_NAME STORAGE CHECKPOINTS

It serves until stopped; each run of `pausable-study/DEPLOYMENT` trains one trial of
`tests.objectives:slow_classifier` for 8 epochs.
"""

import sys

from prefect_intermission import optimize_study

if __name__ == "__main__":
    deployment, study_name, storage, checkpoints = sys.argv[1:]
    optimize_study.serve(
        name=deployment,
        parameters={
            "study_name": study_name,
            "objective": "tests.objectives:slow_classifier",
            "storage": storage,
            "checkpoints": checkpoints,
            "n_trials": 1,
            "max_epochs": 8,
            "seed": 1,
        },
    )
