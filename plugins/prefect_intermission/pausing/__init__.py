"""Where a pause request enters and how it reaches the trials: the signal, the flow-run watcher,
signals and keys, pause rules, held trials, run control, abandonment.
"""
