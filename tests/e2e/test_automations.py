"""The automation recipes of deployments/automations, each loaded into the real server with
`prefect automation create --from-file` once its placeholders are filled in the way its
comments say, then made to fire: a `gpu.needed` event pauses a study through the pause-study
deployment, the team's webhook is told how to resume it, and it resumes by itself once it has
stayed paused for the recipe's time (shortened here to seconds). A second test holds the resume
recipe to its comments from study events alone: timed from a study's latest pause, never after
it resumed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import optuna
import yaml
from optuna.trial import TrialState
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import Automation
from prefect.states import Paused, Running

from deployments.local_stack import PROJECT_ROOT, LocalPrefect
from deployments.ui_actions import (
    start_deployment_run,
    wait_for,
    wait_for_state,
    wait_until_mid_training,
    wait_until_suspended_by_study,
)
from prefect_intermission.reporting.events import emit_study_event
from prefect_intermission.study.state import pause_history
from tests.e2e.studies import study_events, trained_epochs, trials
from tests.e2e.webhook import webhook

RECIPES = PROJECT_ROOT / "deployments" / "automations"
N_TRIALS = 2
#: How long the resume recipe waits here, instead of its 8 hours (Prefect's minimum is 10 s).
PAUSED_FOR_SECONDS = 15


@contextmanager
def automation_from_recipe(
    stack: LocalPrefect, recipe: str, folder: Path, *, fill: dict[str, str] | None = None,
    within: int | None = None,
) -> Iterator[Automation]:
    """Create the automation of a recipe, its placeholders replaced by `fill` (and its trigger's
    `within` by `within`), with the CLI; delete it afterwards."""
    text = (RECIPES / recipe).read_text()
    for placeholder, value in (fill or {}).items():
        assert placeholder in text, f"{recipe} has no placeholder {placeholder}"
        text = text.replace(placeholder, value)
    if within is not None:
        edited = yaml.safe_load(text)
        edited["trigger"]["within"] = within
        text = yaml.safe_dump(edited, sort_keys=False)
    filled = folder / recipe
    filled.write_text(text)
    output = stack.prefect("automation", "create", "--from-file", str(filled))
    assert "Created automation" in output, output
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(yaml.safe_load(text)["name"])
    try:
        yield automation
    finally:
        with get_client(sync_client=True) as client:
            client.delete_automation(automation.id)


def _id_from_inspect(stack: LocalPrefect, *args: str) -> str:
    """The id `prefect ... inspect ... --output json` shows, as a recipe's comments say to find it."""
    return str(json.loads(stack.prefect(*args, "--output", "json"))["id"])


def _states(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run_states(flow_run_id)


def test_a_gpu_needed_event_pauses_the_study_the_team_is_told_and_it_resumes_after_the_set_time(
    prefect_stack, tmp_path
):
    name = f"gpu-needed-{uuid.uuid4().hex[:6]}"
    storage = f"sqlite:///{tmp_path}/studies.db"
    with webhook() as hook, ExitStack() as automations:
        CustomWebhookNotificationBlock(
            name="team alerts",
            url=f"http://127.0.0.1:{hook.port}/hooks/team",
            json_data={"title": "{{subject}}", "message": "{{body}}"},
        ).save(f"team-alerts-{name}")
        block_id = _id_from_inspect(prefect_stack, "block", "inspect", f"custom-webhook/team-alerts-{name}")
        pause_study_id = _id_from_inspect(prefect_stack, "deployment", "inspect", "pause-study/pause-study")
        for recipe, fill, within in [
            ("notify-team-when-a-study-pauses.yaml", {"NOTIFICATION_BLOCK_ID": block_id}, None),
            ("pause-a-study-when-its-gpu-is-needed.yaml", {"PAUSE_STUDY_DEPLOYMENT_ID": pause_study_id}, None),
            ("resume-a-study-paused-for-8-hours.yaml", None, PAUSED_FOR_SECONDS),
        ]:
            automations.enter_context(automation_from_recipe(prefect_stack, recipe, tmp_path, fill=fill, within=within))

        # Trials of 40 s: the pause-study run needs an event, a worker pickup and a process start to arrive.
        run = start_deployment_run(
            "pausable-study/digits-demo",
            {
                "study_name": name, "storage": storage, "checkpoints": str(tmp_path / "checkpoints"),
                "n_trials": N_TRIALS, "max_epochs": 40, "seed": 5, "objective": "tests.objectives:slow_classifier",
            },
            job_variables={"env": {"INTERMISSION_TEST_EPOCH_SECONDS": "1"}},
        )
        wait_until_mid_training(storage, name, min_epochs=2)

        # Whoever needs the GPU says so, as the recipe's comments show.
        prefect_stack.prefect(
            "event", "emit", "gpu.needed", "--resource-id", "gpu.node-1", "--payload", json.dumps({"study_name": name})
        )
        wait_until_suspended_by_study(run.id)
        assert pause_history(optuna.load_study(study_name=name, storage=storage))[0]["reason"] == "deployment"
        paused_trials = {t.number: max(t.intermediate_values) for t in trials(storage, name) if t.state == TrialState.RUNNING}
        assert paused_trials, "a trial was mid-training when the pause landed"

        paused_at = datetime.fromisoformat(wait_for(
            lambda: [e["occurred"] for e in study_events(name) if e["event"] == "intermission.study.paused"],
            timeout=30, what="the study's paused event",
        )[0])

        # The team is told, by Prefect's send-notification action through the block.
        message = wait_for(lambda: hook.messages(f"Study {name} paused"), timeout=60, what="the pause notification")[0]
        body = message["message"]
        assert message["path"] == "/hooks/team"
        assert body.startswith(f"Study {name} paused at {paused_at:%Y-%m-%d %H:%M:%S} UTC (reason: deployment).")
        for number, epoch in paused_trials.items():
            assert f"#{number} ({epoch + 1} epochs done)" in body
        assert f"/runs/flow-run/{run.id}" in body and f"intermission resume {run.id}" in body

        # Nothing else resumes this study (no pause policy, no timeout): the recipe does, once it
        # has stayed paused for its time.
        wait_for_state(run.id, "Completed", timeout=300)
        resumed_at = [s.timestamp for s in _states(run.id) if s.name == "Resuming"]
        assert len(resumed_at) == 1
        assert paused_at + timedelta(seconds=PAUSED_FOR_SECONDS) <= resumed_at[0]
        assert resumed_at[0] <= paused_at + timedelta(seconds=PAUSED_FOR_SECONDS + 60)
        assert len(hook.messages(f"Study {name} paused")) == 1

    done = trials(storage, name)
    assert [t.number for t in done] == list(range(N_TRIALS))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert max(trained_epochs(run.id).values()) == 1, "an epoch was trained twice"


@flow(name="stand-in-study")
def _stand_in() -> None:
    """Never run: its flow runs stand for studies' runs, paused by setting their state."""


def _paused_run(name: str) -> UUID:
    """A flow run of that name, paused as a study's run is paused."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, name=name, state=Running())
        client.set_flow_run_state(run.id, Paused(timeout_seconds=3600), force=True)
    return run.id


def _resumes(flow_run_id: UUID) -> list[datetime]:
    """When the run left a pause."""
    states = _states(flow_run_id)
    return [later.timestamp for earlier, later in zip(states, states[1:]) if earlier.is_paused()]


def test_the_resume_recipe_waits_from_a_study_s_latest_pause_and_leaves_a_resumed_one_alone(prefect_stack, tmp_path):
    """What the recipe's comments promise, from the studies' events alone, emitted as a study
    emits them, about paused flow runs that stand for the studies' runs."""
    # A study's events reach the trigger seconds after they are sent on a loaded machine: the
    # wait leaves 10 s or more between every event and the end of a wait it should change.
    wait = 16
    studies = {what: f"{what}-{uuid.uuid4().hex[:6]}" for what in ("once", "twice", "resumed")}
    runs = {what: _paused_run(name) for what, name in studies.items()}
    with automation_from_recipe(prefect_stack, "resume-a-study-paused-for-8-hours.yaml", tmp_path, within=wait):
        first = datetime.now(timezone.utc)
        for what, name in studies.items():
            emit_study_event("paused", name, runs[what], {"reason": "ui", "trials": {}, "resume_at": None})
        time.sleep(1)
        emit_study_event("resumed", studies["resumed"], runs["resumed"], {"continuing": []})
        time.sleep(5)
        second = datetime.now(timezone.utc)
        emit_study_event("paused", studies["twice"], runs["twice"], {"reason": "ui", "trials": {}, "resume_at": None})
        wait_for(lambda: _resumes(runs["twice"]), timeout=60, what="the study paused twice to be resumed")

    [once] = _resumes(runs["once"])
    [twice] = _resumes(runs["twice"])
    assert once >= first + timedelta(seconds=wait)
    assert twice >= second + timedelta(seconds=wait), "the second pause started the wait again"
    assert _resumes(runs["resumed"]) == [], "the resumed study's wait ended before the second pause's"
