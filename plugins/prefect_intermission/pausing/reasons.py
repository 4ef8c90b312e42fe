"""Why a study paused: the reasons a pause is recorded under, and the pause keys that tell them apart.

Every reason has a human label, shown in the pause summary, the notification and
`intermission status`. A pause rule records its own words instead of a reason.
"""

from __future__ import annotations

from enum import StrEnum


class PauseReason(StrEnum):
    """What asked the study to pause; stored as its value in the study's pause history."""

    UI = "ui"
    CLI = "cli"
    DEPLOYMENT = "deployment"
    TRIAL_FAILED = "trial-failed"
    TRIAL_ERROR = "trial-error"
    LEASE_LOST = "lease-lost"
    TRIAL_RUN_STOPPED = "trial-run-stopped"
    FILE = "file"
    WINDOW = "window"
    TRIAL = "trial"
    SIGNAL = "signal"
    KEY = "key"
    RULE_ERROR = "rule-error"
    STOP = "stop"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """What the reason means, in a few words for people."""
        return _LABELS[self]


_LABELS = {
    PauseReason.UI: "the Pause / Suspend button in the Prefect UI",
    PauseReason.CLI: "`intermission pause`",
    PauseReason.DEPLOYMENT: "the `pause-study` control deployment",
    PauseReason.TRIAL_FAILED: "a trial failed, so the others were paused",
    PauseReason.TRIAL_ERROR: "a trial stopped on an error outside its objective (the study's storage or checkpoints)",
    PauseReason.LEASE_LOST: "this execution lost the study's lease",
    PauseReason.TRIAL_RUN_STOPPED: "a trial's flow run stopped without finishing (cancelled, crashed, or lost its claim)",
    PauseReason.FILE: "the pause file was created",
    PauseReason.WINDOW: "a pause window of the pause policy began",
    PauseReason.TRIAL: "only trials paused on their own (`intermission pause RUN --trial N`) were left",
    PauseReason.SIGNAL: "SIGTERM or Ctrl+C sent to the study's process",
    PauseReason.KEY: "a key pressed in the study's terminal (p or q)",
    PauseReason.RULE_ERROR: "a pause rule raised an error",
    PauseReason.STOP: "Stop & Save (`intermission stop` or the `stop-study` deployment): the study ends early",
    PauseReason.UNKNOWN: "an unknown reason",
}


def describe(reason: str) -> str:
    """The label of a stored reason; a rule's own words are returned as they are."""
    try:
        return PauseReason(reason).label
    except ValueError:
        return reason
