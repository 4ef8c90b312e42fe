"""A study run as a plain Python script, outside any deployment:

    python run_study_script.py NAME STORAGE CHECKPOINTS [--pause-policy P]
        [--n-trials 2] [--max-epochs 12] [--max-concurrent-trials 1] [--seed 1]
"""

import argparse

from prefect_intermission import optimize_study

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("study_name")
    parser.add_argument("storage")
    parser.add_argument("checkpoints")
    parser.add_argument("--pause-policy")
    parser.add_argument("--n-trials", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--max-concurrent-trials", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    optimize_study(
        study_name=args.study_name,
        objective="tests.objectives:slow_classifier",
        storage=args.storage,
        checkpoints=args.checkpoints,
        n_trials=args.n_trials,
        max_epochs=args.max_epochs,
        max_concurrent_trials=args.max_concurrent_trials,
        seed=args.seed,
        pause_policy=args.pause_policy,
    )
