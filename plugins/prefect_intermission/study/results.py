"""A study's best result: its best trial, or with several objectives its Pareto front.

Written once for the run's completion message, the pause summary, `status` and `report`.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best complete trial (a one-item list), the Pareto front with several objectives,
    or `[]` while no trial is complete."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    return [study.best_trial]


def pareto_front(study: optuna.Study) -> list[dict[str, Any]]:
    """The best trials as plain data: number, value(s) and parameters."""
    return [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in best_trials(study)]


def best_text(study: optuna.Study) -> str:
    """The best result in words: 'best trial #3 with value 0.12 and params {...}'."""
    best = best_trials(study)
    if not best:
        return "no trial completed"
    if len(study.directions) == 1:
        return f"best trial #{best[0].number} with value {best[0].value:.6g} and params {best[0].params}"
    directions = ", ".join(d.name.lower() for d in study.directions)
    front = "; ".join(
        f"#{t.number} ({', '.join(f'{v:.6g}' for v in t.values)}) with {t.params}" for t in best
    )
    return f"Pareto front ({directions}) of {len(best)} trial(s): {front}"
