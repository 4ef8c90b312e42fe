"""Entrypoint of the trial deployment (`train-trial` in prefect.yaml): one trial per flow run."""

from prefect_intermission.flows.trial import train_trial

__all__ = ["train_trial"]
