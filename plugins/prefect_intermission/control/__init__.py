"""Operations on a study from outside its run: what `intermission`, the control flows and the
public API do to a study that is running or paused.

- `run_control`: ask a study's flow run to pause or resume; `timed_resume`: a resume at a set time.
- `trial_control`: one trial paused while the others go on.
- `pause_files`: resume the studies whose pause file was deleted; `abandonment`: pauses left
  too long; `stopping`: stop a study for good.
"""
