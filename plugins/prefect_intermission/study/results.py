"""A study's best result: its best trial, or with several objectives its Pareto front.

With one objective the best trial is the best complete one, or a trial stopped by Stop
& Save (recorded pruned) whose best epoch beat it: stopping a study keeps its best
model wherever it is. Written once for the run's completion message, the pause
summary, `status`, `report` and `intermission best`.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: Set on a trial recorded pruned by Stop & Save (the study's trial attribute).
STOPPED_ATTR = "intermission:stopped"


def best_value(trial: FrozenTrial, direction: StudyDirection) -> float | None:
    """A trial's value as the best trial is chosen: its value, or for a trial stopped by
    Stop & Save its best epoch's metric."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.system_attrs.get(STOPPED_ATTR) and trial.intermediate_values:
        values = trial.intermediate_values.values()
        return min(values) if direction == StudyDirection.MINIMIZE else max(values)
    return None


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best trial of a study with one objective (see the module's docstring), or None."""
    direction = study.direction
    scored = [(v, t) for t in study.get_trials(deepcopy=False) if (v := best_value(t, direction)) is not None]
    if not scored:
        return None
    if direction == StudyDirection.MINIMIZE:
        return min(scored, key=lambda vt: (vt[0], vt[1].number))[1]
    return max(scored, key=lambda vt: (vt[0], -vt[1].number))[1]


def several_objectives(study: optuna.Study) -> bool:
    """Whether the study has several objectives (a Pareto front, and Optuna prunes nothing)."""
    return len(study.directions) > 1


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (a one-item list), the Pareto front with several objectives, or `[]`
    while there is none."""
    if several_objectives(study):
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return []
        return sorted(study.best_trials, key=lambda t: t.number)
    best = best_trial(study)
    return [best] if best is not None else []


def pareto_front(study: optuna.Study) -> list[dict[str, Any]]:
    """The best trials as plain data: number, value(s) and parameters."""
    return [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in best_trials(study)]


def best_text(study: optuna.Study) -> str:
    """The best result in words: 'best trial #3 with value 0.12 and params {...}'."""
    best = best_trials(study)
    if not best:
        return "no trial completed"
    if not several_objectives(study):
        value = best_value(best[0], study.direction)
        stopped = " (its best epoch; stopped by Stop & Save)" if best[0].state != TrialState.COMPLETE else ""
        return f"best trial #{best[0].number} with value {value:.6g}{stopped} and params {best[0].params}"
    directions = ", ".join(d.name.lower() for d in study.directions)
    front = "; ".join(
        f"#{t.number} ({', '.join(f'{v:.6g}' for v in t.values)}) with {t.params}" for t in best
    )
    return f"Pareto front ({directions}) of {len(best)} trial(s): {front}"
