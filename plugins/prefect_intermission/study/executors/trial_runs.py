"""Running a study's trials as flow runs of a trial deployment, on any worker of a work pool.

With `trial_deployment`, the study run asks the trials (it alone uses the sampler to
ask) and launches one `pausable-trial` flow run per trial attempt; the workers of the
deployment's work pool start them wherever a slot is free. The study run then watches
those runs and the trials' records in Optuna: epochs as they are stored (progress and
artifacts), and each trial's outcome once its run ends. Pause rules are checked in the
trial runs themselves, at each epoch boundary (see flows/trial.py).

A pause reaches the trial runs through the study's database: the moment the study is
asked to pause (whatever asked), a pause notice is posted there (`pausing/notices.py`),
which every trial run reads several times a second without an API request, and stops at
its next epoch boundary. The study run is also put into the pausing state, which the
UI shows and the trial runs' slower look at it finds. The study reads its trial runs'
states through the process's shared poll, in the same request as its own run's state;
a trial run paused on its own (the UI's button on it) pauses the whole study from here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import optuna
from optuna.trial import FrozenTrial, TrialState
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Crashed

from prefect_intermission._logging import run_logger
from prefect_intermission._optuna_internals import storage_of, trial_id_of
from prefect_intermission.errors import ConfigurationError
from prefect_intermission.pausing.flow_run_poll import FlowRunWatch, shared_poll
from prefect_intermission.pausing.notices import PauseNotices
from prefect_intermission.pausing.reasons import PauseReason
from prefect_intermission.pausing.run_states import pause_reason_of_state, pausing_state
from prefect_intermission.settings import settings
from prefect_intermission.reporting.progress import StudyProgress
from prefect_intermission.study.attempt import TrialOutcome
from prefect_intermission.study.config import StudyConfig
from prefect_intermission.study.executors._trial_run_outcome import outcome_of_trial_run
from prefect_intermission.study.executors.base import TrialExecutor
from prefect_intermission.study.leases import (
    StudyLease,
    lease_seconds_from_env,
    trial_claim_owner_prefix,
    trial_claim_resource,
)
from prefect_intermission.study.state import StudyState
from prefect_intermission.training.direction import best_of
from prefect_intermission.training.pause_signal import PauseSignal
from prefect_intermission.training.store import CheckpointStore

logger = logging.getLogger(__name__)

#: Seconds a trial's claim must be past its expiry before its run counts as lost
#: (slack for clocks that differ between the machines).
_CLAIM_EXPIRY_SLACK_SECONDS = 10.0


def check_trial_deployment(name: str) -> None:
    """Refuse, before any work, a trial deployment the Prefect server does not know."""
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except (ObjectNotFound, ValueError) as e:
            raise ConfigurationError(
                f"trial_deployment {name!r} is not a deployment on this Prefect server ({e}). "
                "Deploy the trial flow first (`intermission deploy --pool POOL`, or `prefect deploy "
                "--name train-trial` with this project's prefect.yaml) and pass its full name, e.g. 'pausable-trial/train-trial'."
            ) from e


@dataclass
class _TrialRun:
    """One launched trial attempt: its flow run and what the study has seen of it."""

    number: int
    trial_id: int
    flow_run_id: UUID
    seen_epochs: set[int] = field(default_factory=set)
    seen_params: bool = False
    claim: StudyLease | None = None  # to read who holds the trial's claim


class FlowRunExecutor(TrialExecutor):
    """Trains each trial attempt as a flow run of the trial deployment (`trial_deployment`)."""

    trains_here = False  # their runs pause themselves, after their epoch in progress

    def __init__(
        self,
        state: StudyState,
        *,
        config: StudyConfig,
        checkpoints: CheckpointStore,
        pause_signal: PauseSignal,
        flow_run_id: UUID,
        study_execution: str,
        progress: StudyProgress | None = None,
    ) -> None:
        if not config.execution.trial_deployment:
            raise ConfigurationError("Trials on other workers need a trial_deployment.")
        self.state = state
        self.config = config
        self.checkpoints = checkpoints
        self.pause_signal = pause_signal
        self.flow_run_id = flow_run_id
        self.study_execution = study_execution
        self.progress = progress
        self.poll_seconds = max(settings().pause_poll_seconds, 0.5)
        self.started_at = time.time()  # pause rules in the trial runs count from here
        self._execution_key = uuid4().hex
        self._announced = False
        self._launched: dict[UUID, _TrialRun] = {}  # the trial runs not collected yet
        self._watches: dict[UUID, FlowRunWatch] = {}
        self._client: SyncPrefectClient | None = None
        self._notices = PauseNotices(state.engine, state.study.study_name)
        pause_signal.on_request(self._post_notice)

    def __enter__(self) -> FlowRunExecutor:
        self._client = get_client(sync_client=True).__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None

    def start(self, trial: optuna.Trial) -> None:
        launched = self._launch(trial.number, trial_id_of(trial))
        self._launched[launched.flow_run_id] = launched
        self._watches[launched.flow_run_id] = shared_poll().watch(launched.flow_run_id, every=self.poll_seconds)

    def running(self) -> list[int]:
        return sorted(r.number for r in self._launched.values())

    def pausing(self) -> None:
        self._announce_pause(self._api())

    def wait(self, timeout: float) -> list[TrialOutcome]:
        """Look at the trial runs once, at the shared poll's next reading of them (about
        `poll_seconds`): their epochs, and how ended ones ended."""
        client = self._api()
        outcomes = []
        for run in self._readings():
            trial_run = self._launched[run.id]
            self._observe(trial_run)
            if self._lost(trial_run, run):
                run = self._mark_crashed(client, run)
            if run.state is not None and run.state.is_final():
                outcomes.append(self._ended(self._launched.pop(run.id), run))
                self._watches.pop(run.id).close()
            elif self.pause_signal.is_requested() and run.state is not None and run.state.is_scheduled():
                self._cancel_unstarted(client, run)
            elif not self.pause_signal.is_requested() and (reason := pause_reason_of_state(run.state)):
                run_logger(__name__).info(
                    "Trial run %s was paused: the study pauses as a whole.", run.name
                )
                self.pause_signal.request(reason)
        return outcomes

    def _readings(self) -> list[FlowRun]:
        """The trial runs' readings the study has not seen yet, waiting about one poll for them
        (a failed read gives none: they are looked at again next time)."""
        if not self._watches:
            time.sleep(self.poll_seconds)
            return []
        deadline = time.monotonic() + self.poll_seconds + 0.5
        readings = [watch.next(timeout=deadline - time.monotonic()) for watch in self._watches.values()]
        return [run for run in readings if run is not None]

    def _post_notice(self, reason: str) -> None:
        """Tell the trial runs to pause, through the study's database (at the request)."""
        try:
            self._notices.post(self.study_execution, reason)
        except Exception:  # posted again as the pause is announced
            logger.warning("Could not post the pause notice for the trial runs; retrying.", exc_info=True)

    def stop_now(self) -> dict[int, int | None]:
        """After a second Ctrl+C: the trials whose runs still train.

        Those runs are on other machines and are not stopped: each sees the study's run
        stop and pauses after the epoch it is in. They are listed with the last epoch they
        reported, which is where they continue from at the least.
        """
        stopped = {}
        for trial_run in self._launched.values():
            frozen = self._frozen(trial_run.trial_id)
            if frozen.state == TrialState.RUNNING:  # not finished meanwhile
                stopped[trial_run.number] = max(frozen.intermediate_values, default=None)
        return stopped

    def _api(self) -> SyncPrefectClient:
        if self._client is None:
            raise RuntimeError("FlowRunExecutor is used outside its `with` block.")
        return self._client

    def _lost(self, trial_run: _TrialRun, run: FlowRun) -> bool:
        """Whether a Running trial run's process is gone with its machine: no worker is
        left to report it Crashed, but its trial's claim is no longer renewed."""
        if run.state is None or not run.state.is_running() or run.start_time is None:
            return False
        try:
            if trial_run.claim is None:
                resource = trial_claim_resource(self.state.study.study_name, trial_run.number)
                trial_run.claim = StudyLease(self.state.engine, resource, "study run")
            holder = trial_run.claim.holder()
        except Exception:  # a flaky database: look again at the next poll
            logger.debug("Could not read the claim of trial %d", trial_run.number, exc_info=True)
            return False
        now = time.time()
        if holder is not None and holder[0].startswith(trial_claim_owner_prefix(run.id)):
            return holder[1] < now - _CLAIM_EXPIRY_SLACK_SECONDS
        # Not claimed by this run (yet: an earlier attempt's claim may still be there, or it
        # released its own) but still Running long after it started.
        return now - run.start_time.timestamp() > 4 * lease_seconds_from_env() + _CLAIM_EXPIRY_SLACK_SECONDS

    def _mark_crashed(self, client: SyncPrefectClient, run: FlowRun) -> FlowRun:
        """Report a lost trial run Crashed, so that the study counts it and pauses."""
        run_logger(__name__).warning(
            "Trial run %s stopped renewing its trial's claim: its process or machine is gone. "
            "Marking it Crashed; the trial continues from its last checkpoint.", run.name,
        )
        try:
            client.set_flow_run_state(
                run.id, Crashed(message="Its process stopped renewing the trial's claim."), force=True
            )
            return client.read_flow_run(run.id)
        except Exception:
            logger.warning("Could not mark trial run %s Crashed; retrying.", run.id, exc_info=True)
            return run

    def _launch(self, number: int, trial_id: int) -> _TrialRun:
        parameters = {
            "config": self.config.model_dump(mode="json"),
            "trial_number": number,
            "study_flow_run_id": str(self.flow_run_id),
            "study_execution": self.study_execution,
            "study_started_at": self.started_at,
        }
        run = run_deployment(
            str(self.config.execution.trial_deployment),
            parameters=parameters,
            timeout=0,
            as_subflow=False,
            flow_run_name=f"{self.state.study.study_name}-trial-{number}",
            tags=["intermission", f"study:{self.state.study.study_name}"],
            # A retried request inside this execution never starts the trial twice.
            idempotency_key=f"{self.flow_run_id}:{self._execution_key}:trial-{number}",
        )
        run_logger(__name__).info("Trial %d launched as flow run %s (%s).", number, run.id, run.name)
        frozen = self._frozen(trial_id)
        values = frozen.intermediate_values
        if self.progress is not None:
            self.progress.trial_started(number, frozen.params, max(values, default=-1), self._best(values))
        return _TrialRun(number, trial_id, run.id, seen_epochs=set(values))

    def _frozen(self, trial_id: int) -> FrozenTrial:
        return storage_of(self.state.study).get_trial(trial_id)

    def _observe(self, trial_run: _TrialRun) -> None:
        """Report epochs the trial run has stored since the last look (progress, rules)."""
        if self.progress is None:
            return
        frozen = self._frozen(trial_run.trial_id)
        if frozen.params and not trial_run.seen_params:
            trial_run.seen_params = True
            seen = {e: v for e, v in frozen.intermediate_values.items() if e in trial_run.seen_epochs}
            self.progress.trial_started(trial_run.number, frozen.params, max(seen, default=-1), self._best(seen))
        values = frozen.intermediate_values
        for epoch in sorted(set(values) - trial_run.seen_epochs):
            trial_run.seen_epochs.add(epoch)
            best = self._best({e: v for e, v in values.items() if e <= epoch})
            self.progress.epoch_finished(trial_run.number, epoch, values[epoch], best)

    def _best(self, values: dict[int, float]) -> float | None:
        """The best of a trial's reported epoch metrics, in the study's direction."""
        return best_of(values.values(), self.config.search.metric_direction)

    def _announce_pause(self, client: SyncPrefectClient) -> None:
        """Put the study run into the pausing state the trial runs follow (once)."""
        if self._announced:
            return
        try:
            self._notices.post(self.study_execution, self.pause_signal.reason or PauseReason.UNKNOWN)
            current = client.read_flow_run(self.flow_run_id)
            if current.state is not None and current.state.is_running():
                pausing = pausing_state(
                    reason=self.pause_signal.reason or "unknown", deployment=current.deployment_id is not None
                )
                client.set_flow_run_state(self.flow_run_id, pausing, force=True)
            # else: already paused (the UI, `intermission pause`): the trial runs see it
        except Exception:  # a flaky API must not end the study as it pauses: try again
            logger.warning("Could not announce the pause to the trial runs; retrying.", exc_info=True)
            return
        self._announced = True

    def _cancel_unstarted(self, client: SyncPrefectClient, run: FlowRun) -> None:
        """A trial run no worker has started yet need not start: the study is pausing."""
        try:
            client.set_flow_run_state(
                run.id, Cancelled(message="The study paused before a worker started this trial run.")
            )
        except Exception:
            logger.debug("Could not cancel trial run %s; waiting for it instead.", run.id, exc_info=True)

    def _ended(self, trial_run: _TrialRun, run: FlowRun) -> TrialOutcome:
        """How the trial run ended. One that paused (or stopped) by itself, its own run
        cancelled or its claim lost, pauses the whole study: a resume continues its trials."""
        outcome = outcome_of_trial_run(
            self.state, self.checkpoints, run, number=trial_run.number, trial_id=trial_run.trial_id
        )
        if outcome.state == "paused":
            self.pause_signal.request(self._why_paused())
        return outcome

    def _why_paused(self) -> str:
        """Why a trial run paused when the study had not seen a pause yet: the study run's own
        pause (a rule met in a trial run, a pause of a trial's run), or the trial run stopped."""
        if not self.pause_signal.is_requested():
            try:
                state = self._api().read_flow_run(self.flow_run_id).state
            except Exception:  # a flaky API: the pause is carried out all the same
                logger.debug("Could not read the study run's state", exc_info=True)
            else:
                if (reason := pause_reason_of_state(state)) is not None:
                    return reason
        return PauseReason.TRIAL_RUN_STOPPED
