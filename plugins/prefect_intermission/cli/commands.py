"""The `intermission` command: deploy the package's flows; pause, resume and inspect studies, and
copy their best weights out.

Each subcommand imports what it uses when it runs: `intermission --help` and a
subcommand's `--help` import neither Prefect nor Optuna nor PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from uuid import UUID

from prefect_intermission.errors import IntermissionError


def _study_run_id(target: str) -> UUID:
    """The flow run a command acts on: the run with that id, or the study's latest run."""
    from prefect_intermission.study.flow_runs import latest_runs

    return latest_runs(target)[0].id


def _is_flow_run_id(target: str) -> bool:
    try:
        UUID(target)
    except ValueError:
        return False
    return True


def _pause(args: argparse.Namespace) -> None:
    from prefect_intermission.control.run_control import request_pause
    from prefect_intermission.reporting.links import flow_run_link

    if args.trial is not None:
        from prefect_intermission.control.trial_control import request_trial_pause

        held = request_trial_pause(_study_run_id(args.study), args.trial)
        print(
            f"Trial {held.trial_number} of study {held.study_name!r} pauses at its next epoch "
            "boundary after storing its checkpoint; the other trials go on.\n"
            f"Resume it with: intermission resume {held.flow_run.id} --trial {held.trial_number} "
            "(it also resumes when the study does)"
        )
        return
    flow_run = request_pause(_study_run_id(args.study))
    print(
        f"Pause requested for {flow_run.name}{flow_run_link(flow_run.id)}: every trial stops at its "
        f"next epoch boundary after storing its checkpoint, then the run is suspended.\n"
        f"Resume it with: intermission resume {flow_run.id}"
    )


def _resume(args: argparse.Namespace) -> None:
    if args.trial is not None:
        _resume_trial(args)
        return
    from prefect_intermission.control.run_control import parse_resume_time, resume
    from prefect_intermission.control.timed_resume import resumes_by_itself
    from prefect_intermission.reporting.links import flow_run_link

    at = parse_resume_time(args.at, args.within)
    resumption = resume(_study_run_id(args.study), force=args.force, at=at)
    flow_run = resumption.flow_run
    run = f"{flow_run.name}{flow_run_link(flow_run.id)}"
    state = flow_run.state.name if flow_run.state else "new"
    if resumption.already:
        print(f"{run} is already resuming ({state}): nothing more to do; it continues every paused trial.")
    elif resumption.at is None:
        # A served deployment (`optimize_study.serve()`) has no work pool: its serving process runs it.
        who = "a worker of its work pool" if flow_run.work_pool_name else "the process serving its deployment"
        print(f"Resuming {run} now: {who} picks it up and continues every paused trial from its checkpoint.")
    else:
        when = resumes_by_itself(flow_run.id, resumption.at, resume_button=resumption.keeps_resume_button)
        print(f"{run} stays paused. {when}")


def _resume_trial(args: argparse.Namespace) -> None:
    from prefect_intermission.control.trial_control import request_trial_resume

    if args.at or args.within or args.force:
        raise IntermissionError("--trial resumes one trial now; it takes no --start-at, --start-in or --force.")
    released = request_trial_resume(_study_run_id(args.study), args.trial)
    state = released.flow_run.state
    if state is not None and state.is_running():
        print(f"Trial {released.trial_number} of study {released.study_name!r} continues from its checkpoint.")
    else:
        print(
            f"Trial {released.trial_number} of study {released.study_name!r} is released; its study "
            f"is {state.name if state else 'not running'}, so it continues when the study does: "
            f"intermission resume {released.flow_run.id}"
        )


def _stop(args: argparse.Namespace) -> None:
    from prefect_intermission.control.stopping import stop_study

    print(stop_study(args.study, by="intermission stop"))


def _status(args: argparse.Namespace) -> None:
    from prefect_intermission.cli._status_table import print_statuses
    from prefect_intermission.cli.status import study_statuses

    statuses = study_statuses(args.study, storage=args.storage)
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2, default=str))
    elif not statuses:
        print("No studies: no 'pausable-study' flow run on the Prefect server at this PREFECT_API_URL.")
    else:
        print_statuses(statuses)


def _report(args: argparse.Namespace) -> None:
    from prefect_intermission.cli.report import write_report
    from prefect_intermission.cli.status import hide_password
    from prefect_intermission.study.flow_runs import latest_runs, study_config_of, study_storage

    if _is_flow_run_id(args.study):  # its study
        config = study_config_of(latest_runs(args.study)[0])
        name, storage = config.study_name, args.storage or config.execution.storage
    else:
        name, storage = args.study, args.storage or study_storage(args.study)
    output = args.output or f"{name}-report.html"
    path = write_report(name, storage, output)
    print(f"Report of study {name!r} ({hide_password(storage)}) written to {path}")


def _best(args: argparse.Namespace) -> None:
    from prefect_intermission._counting import epochs_done
    from prefect_intermission.cli.best import export_best

    exported = export_best(
        args.study, args.output, storage=args.storage, checkpoints=args.checkpoints, trial=args.trial
    )
    for note in exported.notes:
        print(f"intermission: note: {note}", file=sys.stderr)
    value = f"value {exported.value:.6g}" if exported.value is not None else "unfinished"
    out_of = f" of {exported.max_epochs}" if exported.max_epochs is not None else ""
    which = "best epoch" if exported.best_marked else "last valid epoch"
    metric = f", metric {exported.metric:.6g}" if exported.metric is not None else ""
    written = exported.output
    where = f"the folder {written.path} ({', '.join(written.files)})" if written.files else written.path
    print(
        f"Trial {exported.trial} of study {exported.study_name!r} ({value}): {written.what} of its "
        f"{which}, epoch {epochs_done(exported.epoch)}{out_of}{metric}, verified against the manifest "
        f"and written to {where}\nLoad it with: {written.load_with}"
    )


def _deploy(args: argparse.Namespace) -> None:
    from pathlib import Path

    from prefect_intermission.deploy.catalog import DEPLOYMENTS, with_nightly_timezone
    from prefect_intermission.deploy.register import register

    specs = with_nightly_timezone(DEPLOYMENTS, args.timezone) if args.timezone else DEPLOYMENTS
    directory = Path(args.directory).resolve()
    if not directory.is_dir():
        raise IntermissionError(f"--directory {args.directory!r} is not a folder.")
    registered = register(specs, pool=args.pool, directory=directory)
    print(f"Deployed to work pool {args.pool!r}; their flow runs start in {directory}:")
    for deployment in registered:
        when = "; ".join(f"cron {s.cron!r} ({s.timezone})" for s in deployment.spec.schedules)
        print(f"  {deployment.full_name}" + (f"  [{when}]" if when else ""))
    print(
        "Start a worker: prefect worker start --pool " + args.pool + "\n"
        "Run a study:    prefect deployment run pausable-study/study "
        "--param study_name=my-search --param objective=my_objective:objective"
    )


def _init(args: argparse.Namespace) -> None:
    from pathlib import Path

    from prefect_intermission.deploy.catalog import DEPLOYMENTS, with_nightly_timezone
    from prefect_intermission.deploy.project import init_project

    specs = with_nightly_timezone(DEPLOYMENTS, args.timezone) if args.timezone else DEPLOYMENTS
    directory = Path(args.directory)
    if not directory.is_dir():
        raise IntermissionError(f"--directory {args.directory!r} is not a folder.")
    written = init_project(directory, specs, pool=args.pool, force=args.force)
    print(
        f"Wrote {' and '.join(str(path) for path in written)}.\n"
        f"Deploy from this folder with: prefect deploy --all  (or: intermission deploy --pool {args.pool})\n"
        "Run a study:    prefect deployment run pausable-study/study "
        "--param study_name=my-search --param objective=my_objective:objective"
    )


def _deployment_options(command: argparse.ArgumentParser, *, pool_help: str) -> None:
    """The options `deploy` and `init` share: the work pool and the nightly resume's time zone."""
    command.add_argument("--pool", required=True, help=pool_help)
    command.add_argument(
        "--timezone",
        help="The IANA time zone of the nightly resume at 22:00 (default: Europe/Berlin), e.g. America/New_York.",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `intermission` command."""
    from prefect_intermission import __version__

    parser = argparse.ArgumentParser(
        prog="intermission", description="Pause and resume Optuna studies running on Prefect."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    pause = commands.add_parser("pause", help="Pause a running study at its next epoch boundary.")
    pause.add_argument("study", help="The study's name or its flow-run id.")
    pause.add_argument(
        "--trial", type=int, help="Pause only this trial (its number); the others go on."
    )
    pause.set_defaults(handler=_pause)
    resume = commands.add_parser(
        "resume",
        help=(
            "Resume a paused study now, even one set to resume by itself later; with --start-at or --start-in, "
            "(re)schedule when it resumes by itself instead."
        ),
    )
    resume.add_argument("study", help="The study's name or its flow-run id.")
    resume.add_argument("--trial", type=int, help="Resume only this trial, paused on its own.")
    resume.add_argument(
        "--force", action="store_true",
        help="Resume even if the run has not finished pausing (its process is gone).",
    )
    resume.add_argument(
        "--start-at", "--at", dest="at",
        help="Stay paused and resume by itself at this time: HH:MM (local, next such time) or ISO 8601.",
    )
    resume.add_argument(
        "--start-in", "--in", dest="within",
        help="Stay paused and resume by itself after this long, e.g. 90s, 45m, 2h30m.",
    )
    resume.set_defaults(handler=_resume)
    stop = commands.add_parser(
        "stop", help="Stop & Save: end a study early (running or paused), keeping its best trial."
    )
    stop.add_argument("study", help="The study name or its flow-run id.")
    stop.set_defaults(handler=_stop)
    status = commands.add_parser(
        "status", help="Show where studies stand: state, trials, times, pauses, checkpoints."
    )
    status.add_argument(
        "study", nargs="?", help="A study name or flow-run id (default: every study)."
    )
    status.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
    status.add_argument(
        "--storage", help="Read studies from this Optuna storage URL instead of the run's."
    )
    status.set_defaults(handler=_status)
    report = commands.add_parser(
        "report", help="Write a self-contained HTML report with a study's plots."
    )
    report.add_argument("study", help="The study's name or its flow-run id.")
    report.add_argument(
        "--storage", help="The study's Optuna storage URL (default: its flow run's storage)."
    )
    report.add_argument("--output", help="The HTML file to write (default: STUDY-report.html).")
    report.set_defaults(handler=_report)
    best = commands.add_parser(
        "best",
        help="Write the best trial's best weights, verified: a model state_dict file, or a folder "
        "from_pretrained loads for a Hugging Face Trainer's trial.",
    )
    best.add_argument("study", help="A study name or flow-run id.")
    best.add_argument(
        "--output", required=True,
        help="The file to write, e.g. model.pt; for a Hugging Face Trainer's trial, a new or empty "
        "folder, e.g. best-model.",
    )
    best.add_argument(
        "--trial", type=int, help="This trial's best weights instead of the best trial's (its number)."
    )
    best.add_argument(
        "--storage", help="The study's Optuna storage URL (default: its flow run's storage)."
    )
    best.add_argument(
        "--checkpoints", help="Where its checkpoints are (default: its flow run's `checkpoints`)."
    )
    best.set_defaults(handler=_best)
    deploy = commands.add_parser(
        "deploy",
        help="Register the study deployment and every control deployment from the installed package.",
        description=(
            "Create or update, for a work pool, the deployments this package ships: the study "
            "(pausable-study/study), the trial flow and the control flows (pause, stop, the timed resume, "
            "the nightly resume, abandonment, the pause file's resume), with their schedules."
        ),
    )
    _deployment_options(deploy, pool_help="The work pool (it must exist).")
    deploy.add_argument(
        "--directory", default=".",
        help="The folder the flow runs start in on the worker's machine: where objectives are imported "
        "from and relative storage paths point (default: this folder).",
    )
    deploy.set_defaults(handler=_deploy)
    init = commands.add_parser(
        "init",
        help="Write a prefect.yaml of the package's deployments and an objective to start from.",
        description=(
            "Write, into this folder, prefect.yaml (the deployments `intermission deploy` registers, "
            "for `prefect deploy --all`) and my_objective.py (an objective that trains through the "
            "TrialLoop). Existing files are kept unless --force."
        ),
    )
    _deployment_options(init, pool_help="The work pool the deployments use.")
    init.add_argument("--directory", default=".", help="The folder to write into (default: this folder).")
    init.add_argument("--force", action="store_true", help="Overwrite prefect.yaml and my_objective.py.")
    init.set_defaults(handler=_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `intermission` command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except IntermissionError as e:
        print(f"intermission: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if (problem := _unreachable_api(e)) is None:
            raise
        print(f"intermission: error: {problem}", file=sys.stderr)
        return 1
    return 0


def _unreachable_api(error: Exception) -> str | None:
    """What to say when the Prefect API could not be reached, or None for any other error."""
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if isinstance(error, httpx.TransportError) or "ephemeral Prefect API server" in str(error):
        where = f"at {url}" if url else "(no PREFECT_API_URL is set, and no local server could be started)"
        return (
            f"cannot reach the Prefect API {where}: {type(error).__name__}: {error}. Start one with "
            "`prefect server start`, or point this shell at yours with `prefect config set PREFECT_API_URL=...`."
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
