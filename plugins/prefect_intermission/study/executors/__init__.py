"""Where a study's trials train: as tasks of the study's own flow run, or as flow runs of a
trial deployment on any worker. Both implement `TrialExecutor`; one `TrialScheduler` drives either."""
