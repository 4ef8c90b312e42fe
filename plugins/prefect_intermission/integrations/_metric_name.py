"""Which evaluation metric the Transformers callback reports, named as Hugging Face names it.

`TrainingArguments.metric_for_best_model` names a metric with or without the `eval_` prefix
the `Trainer` gives evaluation metrics ("loss" or "eval_loss"); the callback reads a name the
same way. Given none, it reports the arguments' `metric_for_best_model`, as the `Trainer`
would compare checkpoints by it, else `eval_loss`. Nothing here imports Transformers.
"""

from __future__ import annotations

from typing import Any

from prefect_intermission.errors import ConfigurationError
from prefect_intermission.training.direction import Direction

#: What the callback reports when neither it nor the `TrainingArguments` name a metric.
DEFAULT_METRIC = "eval_loss"


def eval_name(name: str) -> str:
    """`name` as the `Trainer`'s evaluation metrics spell it: with the `eval_` prefix."""
    return name if name.startswith("eval_") else f"eval_{name}"


def given_metric(**names: str | None) -> str | None:
    """The one metric named by the keyword arguments given (not None), with its `eval_` prefix;
    None when none is.

    Raises:
        ConfigurationError: Several are given, or one is not a metric's name.
    """
    given = {keyword: name for keyword, name in names.items() if name is not None}
    if not given:
        return None
    if len(given) > 1:
        spelled = ", ".join(f"{keyword}={name!r}" for keyword, name in given.items())
        raise ConfigurationError(f"{' and '.join(given)} name the same metric; pass one of them, but got {spelled}.")
    ((keyword, name),) = given.items()
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{keyword} must be the name of an evaluation metric, but got {keyword}={name!r}.")
    return eval_name(name)


def reported_metric(given: str | None, args: Any) -> str:
    """The metric reported: the one given, else the `TrainingArguments`' `metric_for_best_model`,
    else `eval_loss`."""
    if given is not None:
        return given
    return eval_name(args.metric_for_best_model) if args.metric_for_best_model else DEFAULT_METRIC


def direction_conflict(metric: str, args: Any, direction: Direction) -> str | None:
    """What is wrong when the `TrainingArguments` compare `metric` the other way round from the
    study (`greater_is_better`, set or derived from the name); None when nothing is."""
    if not args.metric_for_best_model or eval_name(args.metric_for_best_model) != metric:
        return None
    if args.greater_is_better is None or args.greater_is_better == (direction == "maximize"):
        return None
    wanted = "maximize" if args.greater_is_better else "minimize"
    return (
        f"greater_is_better={args.greater_is_better} for metric_for_best_model="
        f"{args.metric_for_best_model!r}, but the study's direction is {direction!r}: run the study "
        f"with direction={wanted!r}, or set greater_is_better={not args.greater_is_better}"
    )
