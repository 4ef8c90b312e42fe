"""What a paused study's messages say about its trials and how to continue it."""

from __future__ import annotations

import shlex
import sys

from prefect_intermission._redaction import redact_arguments
from prefect_intermission._counting import epochs_done


def epochs_text(paused: dict[int, int | None]) -> str:
    """`#3 (5 epochs done), #5 (not started)` for the paused trials, or `none`."""
    return ", ".join(
        f"#{n} ({epochs_done(e)} epochs done)" if e is not None else f"#{n} (not started)"
        for n, e in sorted(paused.items())
    ) or "none"


def continue_instruction(study_name: str) -> str:
    """How to continue a study that ran outside a deployment: run it again."""
    if command := same_command():
        return f"continue it by running the same command again:\n    {command}"
    return f"continue it by calling optimize_study again with study_name={study_name!r}."


def continue_markdown(study_name: str) -> str:
    """`continue_instruction` as markdown, for the pause summary and its notification."""
    if command := same_command():
        return f"Run the same command again:\n\n    {command}"
    return f"Call `optimize_study` again with `study_name={study_name!r}`."


def same_command() -> str | None:
    """The command line that started this process (secrets masked), if it was a script."""
    if sys.argv and sys.argv[0] not in ("", "-c"):
        return shlex.join([sys.executable, *redact_arguments(sys.argv)])
    return None
