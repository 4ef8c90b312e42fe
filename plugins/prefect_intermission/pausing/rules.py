"""Pause rules: conditions checked at every epoch boundary that pause the study when met.

A rule is any callable taking a `RuleContext` and returning a reason (a short string) to
pause, or None. The study flow takes rules as `{"rule": "package.module:factory", **kwargs}`:
the factory is called with the kwargs and returns the rule. Two are shipped:

    {"rule": "prefect_intermission.pausing.rules:wall_clock_budget", "seconds": 7200}
    {"rule": "prefect_intermission.pausing.rules:metric_threshold", "threshold": 0.05, "direction": "minimize"}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_intermission._import_path import import_objective
from prefect_intermission._logging import run_logger
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.training.direction import Direction, check_direction, reaches


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees at an epoch boundary."""

    study_name: str
    trial_number: int
    epoch: int
    metric: float
    best_metric: float | None  # the trial's best, this epoch included
    earlier_best: float | None  # the trial's best before this epoch, earlier executions included
    seconds_running: float  # since this execution of the study started


PauseRule = Callable[[RuleContext], str | None]


def wall_clock_budget(seconds: float) -> PauseRule:
    """Pause once this execution has run for `seconds` (e.g. the end of a GPU reservation)."""
    if _number("wall_clock_budget", "seconds", seconds) <= 0:
        raise ConfigurationError(f"wall_clock_budget needs seconds > 0, but got {seconds=}.")
    return lambda context: (
        f"rule: wall-clock budget of {seconds:g} s spent" if context.seconds_running >= seconds else None
    )


def metric_threshold(threshold: float, direction: Direction = "minimize") -> PauseRule:
    """Pause when a trial's epoch metric first reaches `threshold` (to look at a good model).

    Each trial pauses the study once, at the first epoch that reaches it: after a resume
    the trial trains on, however good it stays.
    """
    _number("metric_threshold", "threshold", threshold)
    check_direction(direction)

    def rule(context: RuleContext) -> str | None:
        if not reaches(context.metric, threshold, direction) or reaches(context.earlier_best, threshold, direction):
            return None
        return (
            f"rule: trial {context.trial_number} reached metric {context.metric:.6g} "
            f"({'<=' if direction == 'minimize' else '>='} {threshold:g})"
        )

    return rule


def _number(rule: str, name: str, value: object) -> float:
    """`value` as a finite number, or a ConfigurationError naming the rule's argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(
            f"{rule} needs {name} to be a finite number (in JSON: no quotes), but got {value!r}."
        )
    return float(value)


def load_rules(specs: list[dict[str, Any]]) -> list[PauseRule]:
    """Build the rules of the flow's `pause_rules` parameter, with clear errors."""
    rules = []
    for position, spec in enumerate(specs):
        if not isinstance(spec, dict) or "rule" not in spec:
            raise ConfigurationError(
                f"pause_rules[{position}] must be a mapping with a 'rule' import path, e.g. "
                "{'rule': 'prefect_intermission.pausing.rules:wall_clock_budget', 'seconds': 3600}."
            )
        factory = import_objective(str(spec["rule"]))
        kwargs = {k: v for k, v in spec.items() if k != "rule"}
        try:
            rules.append(factory(**kwargs))
        except TypeError as e:
            raise ConfigurationError(f"pause_rules[{position}] ({spec['rule']}): {e}") from e
    return rules


class RuleChecker:
    """Checks the rules after every epoch and asks for a pause when one is met.

    `earlier_best(number)` gives a trial's best metric before the epoch being checked.
    """

    def __init__(
        self,
        study_name: str,
        rules: list[PauseRule],
        request_pause: Callable[[str], None],
        earlier_best: Callable[[int], float | None],
        *,
        started_at: float | None = None,
    ) -> None:
        self.study_name = study_name
        self.rules = rules
        self.request_pause = request_pause
        self.earlier_best = earlier_best
        # Rules count time from the study execution's start (`started_at`, epoch seconds), here or elsewhere.
        self.started = time.monotonic() - (time.time() - started_at if started_at is not None else 0.0)

    def epoch_finished(self, number: int, epoch: int, metric: float, best: float | None) -> None:
        """Called at an epoch boundary, before the trial looks for a pause request."""
        context = RuleContext(
            self.study_name, number, epoch, metric, best, self.earlier_best(number),
            time.monotonic() - self.started,
        )
        for rule in self.rules:
            try:
                reason = rule(context)
            except Exception as e:
                # A broken rule must not fail the trial: pause, so that nothing trains unwatched.
                run_logger(__name__).error(
                    "Pause rule %r raised %s: %s. Pausing the study; fix the rule and run the "
                    "study again with the same study_name (a resume keeps the run's parameters).",
                    rule, type(e).__name__, e, exc_info=True,
                )
                reason = f"{PauseReason.RULE_ERROR}: {type(e).__name__}"
            if reason is not None:
                self.request_pause(reason)
                return


def attach_rules(
    progress: StudyProgress,
    study_name: str,
    rules: list[PauseRule],
    request_pause: Callable[[str], None],
    *,
    started_at: float | None = None,
) -> None:
    """Check `rules` at every epoch boundary `progress` hears of, on the trial's own thread,
    before the trial looks for a pause request: a rule's pause lands at that very epoch."""
    if rules:
        checker = RuleChecker(study_name, rules, request_pause, progress.best_metric, started_at=started_at)
        progress.add_epoch_hook(checker.epoch_finished)
