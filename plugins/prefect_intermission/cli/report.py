"""A study's report: one self-contained HTML file with its learning curves and Optuna plots.

The file inlines plotly's JavaScript (no CDN), so it opens offline. It shows every
trial's learning curve (intermediate values by epoch) with the epochs it paused after
and the epochs it continued from after a crash marked, the optimisation history and
the parameter importances. Everything is read from the study's Optuna storage; the
stored sampler is never unpickled.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from prefect_intermission._counting import epochs_done
from prefect_intermission._times import shown_time
from prefect_intermission.cli._study_facts import load_study
from prefect_intermission.study.results import best_text, several_objectives
from prefect_intermission.study.state import TRIAL_RESUMPTIONS_ATTR, pause_history


def pause_points(study: optuna.Study) -> dict[int, list[tuple[int, str]]]:
    """For each trial, the epochs where it stopped: `(epoch, "pause: ui")` or `(epoch, "crash")`.

    Pauses come from the study's pause history (the epoch each trial paused after);
    crashes from each trial's resumptions (the checkpointed epoch it continued after).
    """
    points: dict[int, list[tuple[int, str]]] = {}
    for pause in pause_history(study):
        for number, epoch in pause.get("trials", {}).items():
            if epoch is not None:
                points.setdefault(int(number), []).append((int(epoch), f"pause: {pause['reason']}"))
    for t in study.get_trials(deepcopy=False):
        for r in t.system_attrs.get(TRIAL_RESUMPTIONS_ATTR) or []:
            if r.get("reason") == "crash" and r.get("from_epoch") is not None:
                points.setdefault(t.number, []).append((int(r["from_epoch"]), "crash"))
    return points


def learning_curves(study: optuna.Study) -> go.Figure:
    """Every trial's intermediate values by epoch, with its pause and crash points marked."""
    figure = go.Figure()
    stops = pause_points(study)
    marks_x: list[int] = []
    marks_y: list[float] = []
    marks_text: list[str] = []
    for t in study.get_trials(deepcopy=False):
        if not t.intermediate_values:
            continue
        epochs = sorted(t.intermediate_values)
        figure.add_trace(go.Scatter(
            x=epochs, y=[t.intermediate_values[e] for e in epochs], mode="lines+markers",
            name=f"#{t.number} ({t.state.name.lower()})", marker={"size": 5},
        ))
        for epoch, why in stops.get(t.number, []):
            if epoch in t.intermediate_values:
                marks_x.append(epoch)
                marks_y.append(t.intermediate_values[epoch])
                marks_text.append(
                    f"trial #{t.number} continued from its checkpoint after a crash, {epochs_done(epoch)} epochs done"
                    if why == "crash" else f"trial #{t.number} paused with {epochs_done(epoch)} epochs done ({why})"
                )
    if marks_x:
        figure.add_trace(go.Scatter(
            x=marks_x, y=marks_y, mode="markers", name="paused / crashed here",
            text=marks_text, hoverinfo="text",
            marker={"symbol": "x-thin-open", "size": 16, "line": {"width": 3}, "color": "black"},
        ))
    figure.update_layout(
        title="Learning curves (× marks the epoch a trial paused or crashed after)",
        xaxis_title="epoch", yaxis_title="intermediate value",
    )
    return figure


def _optuna_figures(study: optuna.Study) -> Iterable[tuple[str, go.Figure | None, str]]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    several = several_objectives(study)
    if several:  # the best trials are a front, and importances are of the first objective
        yield "Pareto front", optuna.visualization.plot_pareto_front(study) if complete else None, (
            "" if complete else "No trial completed yet."
        )
    else:
        yield "Optimisation history", optuna.visualization.plot_optimization_history(study), ""
    if len(complete) < 2:
        yield "Parameter importances", None, "Parameter importances need at least two completed trials."
        return
    first = {"target": lambda t: t.values[0], "target_name": "objective 1"} if several else {}
    try:
        yield "Parameter importances", optuna.visualization.plot_param_importances(study, **first), ""
    except (ValueError, RuntimeError) as e:
        yield "Parameter importances", None, f"Parameter importances could not be computed: {e}"


def _summary(study: optuna.Study) -> str:
    trials: list[FrozenTrial] = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    rows = "".join(
        f"<tr><td>{html.escape(shown_time(str(p['paused_at'])))}</td><td>{html.escape(str(p['reason']))}</td>"
        f"<td>{html.escape(', '.join(f'#{n} ({epochs_done(e)} epochs done)' for n, e in p['trials'].items()) or '-')}</td></tr>"
        for p in pause_history(study)
    )
    best_line = best_text(study)
    best = f"<p>{html.escape(best_line[0].upper() + best_line[1:])}.</p>"
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
    pauses = (f"<table><tr><th>paused at</th><th>reason</th><th>trials</th></tr>{rows}</table>"
              if rows else "<p>Never paused.</p>")
    return f"<p>{len(trials)} trials: {states}.</p>{best}<h2>Pauses</h2>{pauses}"


def render_report(study: optuna.Study) -> str:
    """The report of a study as one self-contained HTML document."""
    sections: list[str] = []
    include_js: bool | str = True  # plotly.js inlined once, in the first plot
    figures: list[tuple[str, go.Figure | None, str]] = [
        ("Learning curves", learning_curves(study), ""), *_optuna_figures(study)
    ]
    for title, figure, note in figures:
        body = f"<p class='note'>{html.escape(note)}</p>"
        if figure is not None:
            body = figure.to_html(full_html=False, include_plotlyjs=include_js, default_height=480)
            include_js = False
        sections.append(f"<section class='plot'><h2>{html.escape(title)}</h2>{body}</section>")
    name = html.escape(study.study_name)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Study {name}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>"
        f"</head><body><h1>Study {name}</h1>{_summary(study)}{''.join(sections)}</body></html>"
    )


def write_report(study_name: str, storage: str, output: str | os.PathLike[str]) -> str:
    """Write the report of a stored study to `output`; return the path written."""
    study = load_study(study_name, storage)
    document = render_report(study)
    path = os.fspath(output)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(document)
    return path

