"""The run-state protocol: how flow-run states carry pause requests between runs and processes.

A pause is asked for by putting a flow run into a PAUSED state; its pause key says
who asked (the UI, `intermission pause`, the control deployment, the study itself).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

from prefect.states import Cancelled, Completed, Paused, State

from prefect_intermission.pausing.reasons import PauseReason


#: Pause keys of requests made by `intermission pause` start with this.
CLI_PAUSE_KEY_PREFIX = "intermission-cli-"
#: Pause keys of requests made by the `pause-study` control deployment start with this.
CONTROL_PAUSE_KEY_PREFIX = "intermission-control-"
#: Pause keys of the suspensions the study flow makes itself start with this.
FLOW_PAUSE_KEY_PREFIX = "intermission-flow-"
#: Pause keys of a pause the study took over and is still carrying out.
PAUSING_KEY_PREFIX = "intermission-pausing-"


#: Pause keys of a pause a trial run's pause rule asked for; the rule's words are in the message.
RULE_PAUSE_KEY_PREFIX = "intermission-rule-"

_PAUSING_MESSAGE = "Pausing ({reason}): every trial stops at its next epoch boundary."


def pause_reason_of_state(state: Any) -> str | None:
    """The pause reason a flow-run state stands for, or None if it is not a pause."""
    if state is None or not state.is_paused():
        return None
    key = state.state_details.pause_key or ""
    if key.startswith(RULE_PAUSE_KEY_PREFIX):
        return _reason_in_message(state.message or "")
    if key.startswith(CONTROL_PAUSE_KEY_PREFIX):
        return PauseReason.DEPLOYMENT
    return PauseReason.CLI if key.startswith(CLI_PAUSE_KEY_PREFIX) else PauseReason.UI


def pausing_state(*, reason: str, deployment: bool, by_rule: bool = False) -> State:
    """The PAUSED state that tells a study's trial runs to stop: "Pausing", no timeout.

    It is not named "Suspended", so Prefect's engine does not treat it as a suspension
    of the run it is set on (that would end the run at its next orchestration point and
    be remembered by the engine): the study carries out the pause itself. A pause
    `by_rule` (a trial run's pause rule) carries the rule's words as its reason.
    """
    return Paused(
        name="Pausing",
        reschedule=deployment,
        pause_key=f"{RULE_PAUSE_KEY_PREFIX if by_rule else PAUSING_KEY_PREFIX}{uuid4().hex}",
        message=_PAUSING_MESSAGE.format(reason=reason),
    )


def _reason_in_message(message: str) -> str:
    """The reason `pausing_state` wrote into its message."""
    head, tail = _PAUSING_MESSAGE.split("{reason}")
    if message.startswith(head) and message.endswith(tail):
        return message[len(head) : len(message) - len(tail)]
    return PauseReason.UNKNOWN


def paused_trial_state(message: str) -> State:
    """The final state of a trial's task run or flow run that stopped for a pause.

    Named "Paused" and of type CANCELLED, so that the UI does not draw it as a finished
    success (green), and offers no Resume on it: the study's run is what resumes.
    """
    _log_paused_runs_at_info()
    return Cancelled(name="Paused", message=message)


class _PausedIsNoError(logging.Filter):
    """Prefect logs every final state but Completed at ERROR; a trial's "Paused" is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage().startswith("Finished in state Paused("):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _log_paused_runs_at_info() -> None:
    """Have Prefect log a run that ends in `paused_trial_state` at INFO, so a pause shows no
    red ERROR line on the run's page (done once per process)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        engine_logger = logging.getLogger(name)
        if not any(isinstance(f, _PausedIsNoError) for f in engine_logger.filters):
            engine_logger.addFilter(_PausedIsNoError())


def stopped_trial_state(message: str) -> State:
    """The final state of a trial's task run or flow run that Stop & Save ended: the trial is
    recorded pruned at its last epoch, a finished trial like any pruned one."""
    return Completed(name="Stopped", message=message)
