"""Where a pause request enters and how it reaches the trials.

- `reasons`: why a study paused, each reason with its label.
- `run_states`: the run-state protocol: pause keys and the "Pausing" state.
- `watcher`: a pause clicked in the UI or asked by `intermission pause`, seen by the study run.
- `triggers`, `interrupts`, `keys`, `rules`: the pause file and windows, SIGTERM and
  Ctrl+C, the `p`/`q` keys, pause rules.
- `holds`, `notices`: one trial held while the others go on; the pause notices a trial run reads.

A request reaches the trials through `training.pause_signal.PauseSignal`; what acts on a study
from outside (pause or resume its run, stop it) lives in `control`.
"""
