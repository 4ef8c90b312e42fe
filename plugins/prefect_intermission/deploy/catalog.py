"""Every deployment this package ships, in one list: `intermission deploy` registers these.

Each entry point is a module path in the installed package (`module:function`), so a
worker that has the package installed runs it from any working directory; the
repository's prefect.yaml uses the same entry points (tests/integration/test_deploy.py compares them).

Why `module:function` and not Prefect's dotted module form (`EntrypointType.MODULE_PATH`,
`module.function`): Prefect (read in 3.7.1's, 3.8.8's and 3.9.1's `load_flow_from_flow_run`)
runs a deployment's pull steps, which set the working directory a study's objective is
imported from, before importing a `:` entry point in each of them, but 3.7.1 imports a
dotted one first and skips its pull steps (fixed later by Prefect's PR #22376). Prefect's
`import_object` imports `module:function` as a module, not as a file.

To ship one more deployment, add one `DeploymentSpec` to `DEPLOYMENTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The work-pool queue the trial deployment's runs wait in (every other deployment's runs
#: go to the pool's default queue).
TRIALS_QUEUE = "trials"


@dataclass(frozen=True)
class CronSchedule:
    """A cron schedule of a deployment, in an IANA time zone."""

    cron: str
    timezone: str


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of a flow of this package.

    Args:
        name: The deployment's name (the part after the flow name's slash).
        entrypoint: `module:function` of the flow in this package.
        description: What it does and how it is used, shown on its page in the Prefect UI.
        schedules: When it runs by itself; none if only run on demand.
        parameters: Its default parameters.
        work_queue: The work-pool queue its runs wait in; None for the pool's default queue.
        tags: Its tags.
    """

    name: str
    entrypoint: str
    description: str
    schedules: tuple[CronSchedule, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    work_queue: str | None = None
    tags: tuple[str, ...] = ("intermission",)


#: The name of the nightly resume: `intermission deploy --timezone` sets its schedule's time zone.
NIGHTLY_RESUME = "resume-paused-studies-at-night"

DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="study",
        entrypoint="prefect_intermission.flows.study:optimize_study",
        description=(
            "A pausable Optuna study of your objective: give `study_name` and `objective` "
            "(`module:function`, imported from the flow run's working directory). Pause it from the "
            "run's page (Pause / Suspend) or with `intermission pause <flow-run-id>`; resume it with "
            "Resume or `intermission resume <flow-run-id>`."
        ),
    ),
    DeploymentSpec(
        name="train-trial",
        entrypoint="prefect_intermission.flows.trial:train_trial",
        description=(
            "One trial of a pausable study per flow run, started by a `pausable-study` run whose "
            "`trial_deployment` is `pausable-trial/train-trial`. Its runs wait in the `trials` queue "
            "for any worker with a free slot (`prefect worker start --pool <pool> --work-queue trials "
            "--limit 1`, one per GPU); do not start it by hand."
        ),
        work_queue=TRIALS_QUEUE,
    ),
    DeploymentSpec(
        name="pause-study",
        entrypoint="prefect_intermission.flows.control:pause_study",
        description=(
            "Pause a running study at its next epoch boundary: give `study_name` (or `flow_run_id`). "
            "`prefect deployment run pause-study/pause-study --param study_name=my-search`"
        ),
    ),
    DeploymentSpec(
        name="stop-study",
        entrypoint="prefect_intermission.flows.control:stop_study_flow",
        description=(
            "Stop & Save: end a study early, running or paused. Its trials in flight stop at their "
            "next boundary and are recorded pruned, and its run completes with its best trial. "
            "`prefect deployment run stop-study/stop-study --param study_name=my-search`"
        ),
    ),
    DeploymentSpec(
        name="resume-study",
        entrypoint="prefect_intermission.flows.control:resume_study",
        description=(
            "Resumes one paused study at the time it was set to resume (the timeout typed in the UI's "
            "pause dialog, the pause policy's `resume_cron`, `intermission resume --start-at/--start-in`). A paused "
            "study schedules this run itself and stays Suspended meanwhile, so Resume still resumes it "
            "sooner; a study resumed sooner, or paused again, is left alone. Do not run it by hand."
        ),
    ),
    DeploymentSpec(
        name=NIGHTLY_RESUME,
        entrypoint="prefect_intermission.flows.control:resume_paused_studies",
        description=(
            "Resume every suspended study whose name starts with `study_name_prefix`, every night at "
            "22:00 in its schedule's time zone (`intermission deploy --timezone`, or edit both)."
        ),
        schedules=(CronSchedule("0 22 * * *", "Europe/Berlin"),),
        parameters={"study_name_prefix": ""},
    ),
    DeploymentSpec(
        name="abandon-expired-pauses",
        entrypoint="prefect_intermission.flows.control:abandon_expired_pauses_flow",
        description=(
            "Every hour: cancel, as \"Abandoned\", suspended studies that waited longer than their "
            "pause policy's `abandon_after_hours`. Their trials and checkpoints are kept; running the "
            "study again with the same study_name continues it."
        ),
        schedules=(CronSchedule("0 * * * *", "UTC"),),
    ),
    DeploymentSpec(
        name="resume-deleted-pause-files",
        entrypoint="prefect_intermission.flows.control:resume_deleted_pause_files_flow",
        description=(
            "Every 5 minutes: resume suspended studies that their pause policy's `pause_file` paused, "
            "once that file is deleted. It reads the file where it runs: give the policy an absolute "
            "path on a folder this work pool's workers see (the same machine, or a shared folder)."
        ),
        schedules=(CronSchedule("*/5 * * * *", "UTC"),),
    ),
)


def with_nightly_timezone(specs: tuple[DeploymentSpec, ...], timezone: str) -> tuple[DeploymentSpec, ...]:
    """`specs` with the nightly resume's schedules in `timezone` (an IANA name, checked)."""
    from dataclasses import replace
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from prefect_intermission.errors import ConfigurationError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigurationError(
            f"timezone must be an IANA time zone such as 'Europe/Berlin' or 'America/New_York', "
            f"but got {timezone=}."
        ) from e
    return tuple(
        replace(spec, schedules=tuple(replace(s, timezone=timezone) for s in spec.schedules))
        if spec.name == NIGHTLY_RESUME
        else spec
        for spec in specs
    )
