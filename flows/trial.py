"""The trial flow (one trial per flow run), for deployments registered with the entry point
`flows/trial.py:train_trial`; prefect.yaml and `intermission deploy` use the package's
`prefect_intermission.flows.trial:train_trial`."""

from prefect_intermission.flows.trial import train_trial

__all__ = ["train_trial"]
