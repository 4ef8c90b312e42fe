"""The study flow, for deployments registered with the entry point `flows/study.py:optimize_study`.

prefect.yaml and `intermission deploy` use the package's `prefect_intermission.flows.study:optimize_study`."""

from prefect_intermission import optimize_study

__all__ = ["optimize_study"]

if __name__ == "__main__":
    # Run a small study from a terminal, outside any deployment:
    #   python flows/study.py
    optimize_study(study_name="digits-local", objective="flows.digits:objective", n_trials=4, max_epochs=8)
