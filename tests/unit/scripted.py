"""Trials that "train" in memory: each attempt ends at once as a script says, recorded in a
real Optuna study as the real executors record it. For the scheduler's and the study run's
unit tests."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from prefect_intermission._optuna_internals import trial_id_of
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.executors.base import TrialExecutor
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.pause_signal import PauseSignal

#: How an attempt of a trial ends, from its number and how many attempts it had before.
Script = Callable[[optuna.Trial, int], TrialOutcome]


def completes(trial: optuna.Trial, attempt: int) -> TrialOutcome:
    return TrialOutcome(trial.number, "complete", value=float(trial.number), epoch=2)


class ScriptedExecutor(TrialExecutor):
    """Trains nothing: each attempt ends at its next `wait` as `script` says, and is recorded in
    the study as the real executors record it (complete: told to Optuna; paused: left RUNNING)."""

    def __init__(self, state: StudyState, script: Script, *, signal: PauseSignal | None = None) -> None:
        self.state, self.script, self.signal = state, script, signal
        self.started: list[int] = []
        self.most_at_once = 0
        self._running: dict[int, optuna.Trial] = {}

    def start(self, trial: optuna.Trial) -> None:
        self.started.append(trial.number)
        self._running[trial.number] = trial
        self.most_at_once = max(self.most_at_once, len(self._running))

    def running(self) -> list[int]:
        return list(self._running)

    def wait(self, timeout: float) -> list[TrialOutcome]:
        outcomes = []
        for number, trial in list(self._running.items()):
            outcome = self.script(trial, self.started.count(number) - 1)
            del self._running[number]
            if outcome.state == "complete":
                self.state.study.tell(trial, outcome.value)
            elif outcome.state == "paused":
                self.state.mark_paused(trial_id_of(trial), outcome.epoch)
            elif not outcome.kept:
                self.state.study.tell(trial, state=TrialState.FAIL)
            outcomes.append(outcome)
        return outcomes

    def stop_now(self) -> dict[int, int | None]:
        return {}
