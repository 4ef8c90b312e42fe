"""A live display of a study's trials and epochs when it runs in a terminal.

When output is not a terminal (a worker, a log file, CI) nothing is drawn: the
per-epoch log lines of the trial loop are the progress report.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from prefect_intermission.reporting.progress import StudyProgress


class TerminalProgress:
    """Draws one bar for the study's finished trials and one per trial trained in this run."""

    def __init__(self, progress: StudyProgress, *, stream: TextIO | None = None) -> None:
        self.progress = progress
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._bars: dict[int, TaskID] = {}
        self._display = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
        )
        self._study_bar = self._display.add_task(
            f"study {progress.study_name}", total=progress.n_trials,
            completed=progress.finished, detail="trials finished",
        )
        if self.enabled:
            progress.add_listener(self._refresh)

    def __enter__(self) -> TerminalProgress:
        if self.enabled:
            self._display.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self._display.stop()

    def _refresh(self, progress: StudyProgress) -> None:
        self._display.update(self._study_bar, completed=min(progress.finished, progress.n_trials))
        for trial in progress.trials():
            if trial.number not in self._bars:
                self._bars[trial.number] = self._display.add_task(
                    f"  trial {trial.number}", total=progress.max_epochs, detail=""
                )
            best = f"best {trial.best_metric:.4g}" if trial.best_metric is not None else ""
            self._display.update(
                self._bars[trial.number], completed=trial.epoch + 1, detail=f"{trial.state} {best}"
            )
