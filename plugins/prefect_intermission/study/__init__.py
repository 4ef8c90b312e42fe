"""The Optuna study.

- `config`: `StudyConfig`, the study's parameters with their defaults, built once.
- `setup`: storage, checkpoint store and pause policy, checked before any work.
- `location`: where a study lives, recorded with its flow run; a re-execution that does
  not find it there stops before the study is opened.
- `state`: what the study stores beside Optuna's trials (sampler, pauses, trial marks).
- `resuming`: what a new execution continues: checkpoints checked first, trials reattached,
  each continuation recorded.
- `attempt`: one attempt of one trial; `scheduler` decides which trials train, and
  `executors/` trains them here (tasks) or elsewhere (trial runs).
- `leases`: one execution per study, one per trial; `flow_runs`: a study's runs on the server;
  `study_run_watcher`: what a trial run in its own flow run watches of its study run.
"""
