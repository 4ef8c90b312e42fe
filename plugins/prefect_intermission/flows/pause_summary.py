"""The human-readable summary of a pause: what paused, why, where things are, how to resume."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from prefect_intermission._counting import position_text
from prefect_intermission._times import shown_time
from prefect_intermission.pausing.reasons import describe
from prefect_intermission.reporting.links import flow_run_link
from prefect_intermission.study.results import best_text
from prefect_intermission.study.state import TRIAL_PAUSED_STEPS_ATTR, StudyState


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def pause_summary(
    state: StudyState,
    entry: dict[str, Any],
    *,
    n_trials: int,
    max_epochs: int,
    checkpoints: str,
    flow_run_id: UUID,
    resume_at: datetime | None = None,
    how_to_resume: str | None = None,
    zone: str = "UTC",
) -> str:
    """Markdown for the pause artifact: the same facts `intermission status` shows.

    `how_to_resume` replaces the Resume button and command of a deployment run, for
    runs that continue otherwise (run the same command again, delete the pause file).
    Times are shown in the IANA time zone `zone` (the pause policy's): its readers may be anywhere.
    """
    study = state.study
    paused = entry["trials"]
    steps = {  # the steps trained into the next epoch, for trials paused within it
        t.number: t.system_attrs.get(TRIAL_PAUSED_STEPS_ATTR)
        for t in study.get_trials(deepcopy=False) if t.number in {int(n) for n in paused}
    }
    lines = [
        f"# Study `{study.study_name}` paused",
        "",
        f"- **Why:** {describe(entry['reason'])}",  # rules give their own words
        f"- **When:** {shown_time(entry['paused_at'], zone)}",
        f"- **Trials:** {state.finished_count()} of {n_trials} finished; "
        + (
            ", ".join(
                f"#{n} paused: {position_text(e, max_epochs, steps.get(int(n)))}" if e is not None else f"#{n} not started"
                for n, e in paused.items()
            )
            or "none mid-training"
        ),
    ]
    lines.append(f"- **Best so far:** {best_text(study)}")
    lines.append(f"- **Checkpoints:** `{checkpoints}`")
    resources = entry.get("resources") or {}
    if resources:
        lines.append(
            f"- **Training process at pause:** CPU {resources['cpu_percent']}% (average), memory "
            f"{_bytes(resources['rss_bytes'])} (peak {_bytes(resources['peak_rss_bytes'])})"
        )
        for gpu in resources.get("gpus", []):
            utilization = gpu["utilization_percent"]
            lines.append(
                f"- **GPU {gpu['index']} ({gpu['name']}):** "
                f"{'utilisation ' + str(utilization) + '%, ' if utilization is not None else ''}"
                f"memory {_bytes(gpu['memory_allocated_bytes'])} "
                f"(peak {_bytes(gpu['max_memory_allocated_bytes'])})"
            )
    lines.append(
        f"- **Resumes:** by itself at {shown_time(resume_at, zone)}, or sooner "
        "when you resume it (below)"
        if resume_at is not None else "- **Resumes:** when you resume it"
    )
    lines += ["", "## Resume", "", how_to_resume or _resume_button_and_command(flow_run_id), ""]
    lines.append("Every paused trial continues from its checkpoint, where it stopped.")
    return "\n".join(lines)


def _resume_button_and_command(flow_run_id: UUID) -> str:
    link = flow_run_link(flow_run_id)
    return f"Click **Resume** on this flow run's page{link}, or run:\n\n    intermission resume {flow_run_id}"
