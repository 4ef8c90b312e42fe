"""What a trial run watches: the study's flow run, and its own.

A trial trained in a flow run of its own (`trial_deployment`) stops at its next epoch
boundary when the study's run is paused, ends or loses the execution that launched
it. A pause of the trial's own run, or a pause rule met in it, pauses the whole study.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.states import Running

from prefect_intermission._threads import BackgroundLoop, ContextThread
from prefect_intermission.pausing.run_states import pause_reason_of_state, pausing_state
from prefect_intermission.pausing.signal import PauseSignal
from prefect_intermission.pausing.watcher import poll_seconds_from_env
from prefect_intermission.study.leases import StudyLease

logger = logging.getLogger(__name__)


class StudyRunWatcher(BackgroundLoop):
    """Background thread that stops a trial when the study's run pauses or stops.

    It sets the signal when the study's flow run is PAUSED (however it was paused),
    ends or is cancelled, or when the study's lease is no longer held by the
    execution that launched this trial (that execution died). Pausing this trial's
    own flow run (the UI's button on it) pauses the whole study.
    """

    def __init__(
        self,
        signal: PauseSignal,
        *,
        trial_run_id: UUID,
        study_run_id: UUID,
        study_lease: StudyLease,
        study_execution: str,
        poll_seconds: float | None = None,
    ) -> None:
        self.signal = signal
        self.trial_run_id = trial_run_id
        self.study_run_id = study_run_id
        self.study_lease = study_lease
        self.study_execution = study_execution
        self.poll_seconds = poll_seconds if poll_seconds is not None else poll_seconds_from_env()
        self.own_run_was_paused = False
        self._thread = ContextThread(self._watch, name=f"intermission-study-watcher-{trial_run_id}")


    def _watch(self) -> None:
        with get_client(sync_client=True) as client:
            while not self._thread.stopping.is_set() and not self.signal.is_requested():
                try:
                    reason = self._stop_reason(client)
                except Exception:  # a flaky API or database must not stop training
                    logger.debug("Could not read the study's run or lease", exc_info=True)
                    reason = None
                if reason is not None:
                    logger.info("Pause requested (%s): pausing at the next epoch boundary.", reason)
                    self.signal.request(reason)
                    return
                self._thread.stopping.wait(self.poll_seconds)

    def _stop_reason(self, client: SyncPrefectClient) -> str | None:
        own = client.read_flow_run(self.trial_run_id).state
        study = client.read_flow_run(self.study_run_id).state
        if pause_reason_of_state(own) is not None:
            self._forward_pause(client, study)
        if (reason := pause_reason_of_state(study)) is not None:
            return reason
        if study is None or not study.is_running():
            return f"study run {study.name if study else 'gone'}"
        holder = self.study_lease.holder()
        if holder is None or holder[0] != self.study_execution or holder[1] < time.time():
            return "study execution gone"
        return None

    def _forward_pause(self, client: SyncPrefectClient, study: Any) -> None:
        """A pause of this trial's run pauses the study (the unit a resume continues)."""
        # Prefect's engine remembers that this run was suspended and would end it
        # Suspended, not with its outcome: the flow reports its final state itself.
        self.own_run_was_paused = True
        if study is not None and study.is_running():
            study_run = client.read_flow_run(self.study_run_id)
            client.set_flow_run_state(
                self.study_run_id,
                pausing_state(reason="a trial's run was paused", deployment=study_run.deployment_id is not None),
                force=True,
            )
        client.set_flow_run_state(
            self.trial_run_id, Running(message="The study pauses as a whole."), force=True
        )

    def pause_study(self, reason: str) -> None:
        """A pause rule met in this trial run pauses the study: its other trials follow it."""
        self.signal.request(reason)
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
