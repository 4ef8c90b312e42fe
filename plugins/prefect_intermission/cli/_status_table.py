"""Rendering study statuses for the terminal: one summary table, then each study's details."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from prefect_intermission._counting import epochs_done, position_text
from prefect_intermission._times import shown_time
from prefect_intermission.cli.status import StudyStatus
from prefect_intermission.control.timed_resume import PAUSED_UNTIL, resumes_by_itself

_STATE_STYLES = {
    "running": "green", "pausing": "yellow", "paused": "yellow", "scheduled to resume": "cyan",
    "completed": "bold green", "failed": "red", "abandoned": "bold red",
}


def duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 07s`, `12.3s`, or `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def size(n: int) -> str:
    """A byte count in B, KiB, MiB or GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _trials(s: StudyStatus) -> str:
    t = s.trials
    parts = [f"{t[k]} {k}" for k in ("running", "paused", "interrupted", "pruned", "failed") if t[k]]
    return f"{t['finished']}/{s.n_trials} finished" + (f"\n{', '.join(parts)}" if parts else "")


def _when(iso: str | None) -> str:
    """A status time as people read it, or `-` when there is none."""
    return shown_time(iso) if iso else "-"


def _last_pause(s: StudyStatus) -> str:
    if s.last_pause is None:
        return "-"
    return f"{shown_time(s.last_pause['paused_at'])}\n({s.last_pause['reason']})"


def summary_table(statuses: list[StudyStatus]) -> Table:
    """One row per study."""
    table = Table(title="Studies", show_lines=True)
    for name in ("study", "state", "trials", "best", "trained", "remaining (est.)",
                 "last pause", "resumes at", "checkpoints"):
        table.add_column(name)
    for s in statuses:
        table.add_row(
            s.study_name,
            Text(s.state, style=_STATE_STYLES.get(s.state, "")),
            _trials(s),
            _best(s),
            duration(s.training_seconds),
            duration(s.estimated_remaining_seconds),
            _last_pause(s),
            _when(s.resumes_at),
            f"{size(s.checkpoint_bytes)} in {s.checkpoint_files} files",
        )
    return table


def _best(s: StudyStatus) -> str:
    if s.pareto_front:
        return f"Pareto front: {len(s.pareto_front)} trial(s)"
    return f"{s.best_value:.6g} (#{s.best_trial})" if s.best_value is not None else "-"


def details(s: StudyStatus) -> Group:
    """Everything else about one study: run, unfinished trials, best params, history."""
    lines = [
        Text(f"{s.study_name}: {s.state}", style="bold"),
        Text(f"  flow run {s.flow_run_id} ({s.prefect_state})" + (f"  {s.ui_url}" if s.ui_url else "")),
        Text(f"  started {_when(s.started_at)}; seed {'-' if s.seed is None else s.seed}; storage {s.storage}; checkpoints {s.checkpoints or '-'}"),
        Text(
            f"  trained {duration(s.training_seconds)} over {s.measured_epochs} epochs (pauses not "
            f"counted); {s.epochs_left} epochs left x {duration(s.mean_epoch_seconds)} mean "
            f"= {duration(s.estimated_remaining_seconds)} (at most: pruning ends trials sooner)"
        ),
    ]
    if s.best_params is not None:
        lines.append(Text(f"  best #{s.best_trial}: {s.best_value:.6g} with {s.best_params}"))
    for t in s.pareto_front or []:
        values = ", ".join(f"{v:.6g}" for v in t["values"])
        lines.append(Text(f"  Pareto front #{t['trial']}: ({values}) with {t['params']}"))
    for u in s.unfinished:
        metric = f"{u.last_metric:.6g}" if u.last_metric is not None else "-"
        lines.append(Text(
            f"  trial #{u.number} {u.status}: {position_text(u.epochs_done - 1, u.max_epochs, u.paused_steps_into_epoch)}"
            f"; last metric {metric}"
        ))
    for p in s.pauses:
        stopped = ", ".join(f"#{n} ({epochs_done(e)} epochs done)" for n, e in p["trials"].items()) or "no trial"
        lines.append(Text(f"  paused {shown_time(p['paused_at'])} ({p['reason']}): {stopped}"))
        if resources := p.get("resources"):
            gpus = "".join(
                f"; GPU {g['index']} {g['utilization_percent'] if g['utilization_percent'] is not None else '-'}%"
                f" {size(g['memory_allocated_bytes'])}"
                for g in resources.get("gpus", [])
            )
            lines.append(Text(
                f"    at pause: CPU {resources['cpu_percent']}% (average), memory "
                f"{size(resources['rss_bytes'])} (peak {size(resources['peak_rss_bytes'])}){gpus}"
            ))
    for r in s.resumptions:
        lines.append(Text(
            f"  resumed {shown_time(r['at'])} trial #{r['trial']} after {r['reason']} {_resumed_from(r['from_epoch'])}"
            + (f", retrained epochs {r['lost_epochs']}" if r.get("lost_epochs") else "")
        ))
    if s.resumes_at and s.state == "paused":
        resume_button = s.prefect_state != PAUSED_UNTIL  # still Suspended: the UI offers Resume
        when = resumes_by_itself(s.flow_run_id, datetime.fromisoformat(s.resumes_at), resume_button=resume_button)
        lines.append(Text(f"  {when}"))
    elif s.resumes_at:
        lines.append(Text(f"  scheduled to resume at {shown_time(s.resumes_at)}"))
    for problem in s.problems:
        lines.append(Text(f"  problem: {problem}", style="red"))
    return Group(*lines)


_UNBOUNDED = 10_000  # columns: wider than any table, which then takes its natural width


def print_statuses(statuses: list[StudyStatus], console: Console | None = None) -> None:
    """Print the summary table, then each study's details.

    Piped or captured (no terminal, so no width), the table keeps its natural width
    rather than Rich's 80 columns, which cut study names and states short."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=_UNBOUNDED)
    console.print(summary_table(statuses))
    for s in statuses:
        console.print(details(s))


def _resumed_from(from_epoch: int | None) -> str:
    """Where a resumed trial continued: after a checkpointed epoch, or from the start."""
    return "from the start" if from_epoch is None else f"with {epochs_done(from_epoch)} epochs done"
