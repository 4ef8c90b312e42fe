"""What a trial run watches: the study's pause notice and lease, its own run and the study's.

A trial trained in a flow run of its own (`trial_deployment`) stops at its next epoch
boundary when the study pauses, ends or loses the execution that launched it. A pause
of the trial's own run, or a pause rule met in it, pauses the whole study.

The study's pause reaches the trial through the study's database: the notice the study
run posts (`notices.py`) and its lease, read four times a second, with no API request.
The trial's own run (the UI's Pause button on it) and the study's run (ended, cancelled,
or paused while its process cannot post) are read together, one request every
`INTERMISSION_TRIAL_RUN_POLL_SECONDS` (10 s by default), through the shared poll.
"""

from __future__ import annotations

import logging
import time
from typing import Self
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Running

from prefect_intermission._logging import run_logger
from prefect_intermission._threads import BackgroundLoop, ContextThread
from prefect_intermission.pausing.flow_run_poll import FlowRunWatch, shared_poll
from prefect_intermission.pausing.notices import PauseNotices
from prefect_intermission.pausing.run_states import pause_reason_of_state, pausing_state
from prefect_intermission.settings import settings
from prefect_intermission.study.leases import StudyLease
from prefect_intermission.training.pause_signal import PauseSignal

logger = logging.getLogger(__name__)

#: Seconds between two reads of the study's pause notice and lease (its database, not the API).
NOTICE_POLL_SECONDS = 0.25


class StudyRunWatcher(BackgroundLoop):
    """Background thread that stops a trial when the study's run pauses or stops.

    It sets the signal when the study posts a pause notice for the execution that
    launched this trial, when that execution's lease is gone, or when the study's flow
    run is seen PAUSED (however it was paused), ended or cancelled. Pausing this
    trial's own flow run (the UI's button on it) pauses the whole study.
    """

    def __init__(
        self,
        signal: PauseSignal,
        *,
        trial_run_id: UUID,
        study_run_id: UUID,
        study_lease: StudyLease,
        study_execution: str,
        notices: PauseNotices,
        run_poll_seconds: float | None = None,
    ) -> None:
        self.signal = signal
        self.trial_run_id = trial_run_id
        self.study_run_id = study_run_id
        self.study_lease = study_lease
        self.study_execution = study_execution
        self.notices = notices
        self.run_poll_seconds = (
            run_poll_seconds if run_poll_seconds is not None else settings().trial_run_poll_seconds
        )
        self.own_run_was_paused = False
        self._runs: tuple[FlowRunWatch, FlowRunWatch] | None = None
        self._thread = ContextThread(self._watch, name=f"intermission-study-watcher-{trial_run_id}")

    def __enter__(self) -> Self:
        poll = shared_poll()
        self._runs = (
            poll.watch(self.trial_run_id, every=self.run_poll_seconds),
            poll.watch(self.study_run_id, every=self.run_poll_seconds),
        )
        return super().__enter__()

    def __exit__(self, *exc_info: object) -> None:
        runs, self._runs = self._runs, None
        self._thread.stop()
        for run in runs or ():
            run.close()

    def _watch(self) -> None:
        runs = self._runs
        if runs is None:
            return
        while not self._thread.stopping.is_set() and not self.signal.is_requested():
            try:
                reason = self._stop_reason(*runs)
            except Exception:  # a flaky API or database must not stop training
                logger.debug("Could not read the study's notice, lease or run", exc_info=True)
                reason = None
            if reason is not None:  # on the trial run's log, with when it was seen
                run_logger(__name__).info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                self.signal.request(reason)
                return
            self._thread.stopping.wait(NOTICE_POLL_SECONDS)

    def _stop_reason(self, own_run: FlowRunWatch, study_run: FlowRunWatch) -> str | None:
        if (reason := self.notices.reason_for(self.study_execution)) is not None:
            return reason
        own, study = own_run.next(timeout=0), study_run.next(timeout=0)  # new readings only
        if own is not None and (own_reason := pause_reason_of_state(own.state)) is not None:
            self._forward_pause(own_reason, study or study_run.latest)
        if study is not None:
            if (reason := pause_reason_of_state(study.state)) is not None:
                return reason
            if study.state is None or not study.state.is_running():
                return f"study run {study.state.name if study.state else 'gone'}"
        holder = self.study_lease.holder()
        if holder is None or holder[0] != self.study_execution or holder[1] < time.time():
            return "study execution gone"
        return None

    def _forward_pause(self, own_reason: str, study: FlowRun | None) -> None:
        """A pause of this trial's run pauses the study (the unit a resume continues)."""
        # Prefect's engine remembers that this run was suspended and would end it
        # Suspended, not with its outcome: the flow reports its final state itself.
        self.own_run_was_paused = True
        self.notices.post(self.study_execution, own_reason)  # the other trials stop at once
        with get_client(sync_client=True) as client:
            if study is None:
                study = client.read_flow_run(self.study_run_id)
            if study.state is not None and study.state.is_running():
                client.set_flow_run_state(
                    self.study_run_id,
                    pausing_state(reason="a trial's run was paused", deployment=study.deployment_id is not None),
                    force=True,
                )
            client.set_flow_run_state(
                self.trial_run_id, Running(message="The study pauses as a whole."), force=True
            )

    def pause_study(self, reason: str) -> None:
        """A pause rule met in this trial run pauses the study: its other trials follow it."""
        self.signal.request(reason)
        try:
            self.notices.post(self.study_execution, reason)
        except Exception:  # the study run's state below tells them too
            logger.warning("Could not post the rule's pause for the other trials.", exc_info=True)
        try:
            with get_client(sync_client=True) as client:
                study = client.read_flow_run(self.study_run_id)
                if study.state is not None and study.state.is_running():
                    client.set_flow_run_state(
                        self.study_run_id,
                        pausing_state(reason=reason, deployment=study.deployment_id is not None, by_rule=True),
                        force=True,
                    )
        except Exception:  # this trial pauses all the same; the study sees it stop and pauses too
            logger.warning("Could not pass the rule's pause on to the study run.", exc_info=True)
