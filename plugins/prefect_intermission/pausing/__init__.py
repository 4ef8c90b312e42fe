"""Where a pause request enters and how it reaches the trials.

- `signal`: the `PauseSignal` every trial reads at its boundaries (no Prefect).
- `reasons`: why a study paused, each reason with its label.
- `run_states`: the run-state protocol: pause keys and the "Pausing" state.
- `watcher`: a pause clicked in the UI or asked by `intermission pause`, seen by the study run.
- `study_run_watcher`: what a trial run in its own flow run watches.
- `triggers`, `interrupts`, `keys`, `rules`: the pause file and windows, SIGTERM and
  Ctrl+C, the `p`/`q` keys, pause rules.
- `holds`, `trial_control`: one trial paused while the others go on.
- `run_control`: asking a flow run to pause or resume; `abandonment`: pauses left too long.
"""
