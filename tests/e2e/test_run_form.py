"""The deployment's Custom run form in the Prefect UI: the settings in their groups, each with
its description, and the pause policy chosen in a block picker, as Prefect offers for any
block; the run it submits uses what was typed and picked."""

from __future__ import annotations

import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

from deployments.ui_actions import wait_for, wait_for_state
from prefect_intermission import PausePolicy
from prefect_intermission.study.config import SETTING_GROUPS
from prefect_intermission.study.flow_runs import study_config_of
from tests.e2e.browser import SCREENSHOTS, chromium
from tests.e2e.webhook import webhook

DEPLOYMENT = "pausable-study/digits-demo"


def _field(page, name: str):
    """The form's section of parameter `name` (its label, description and input)."""
    return page.get_by_text(f"{name} (Optional)", exact=True).or_(page.get_by_text(name, exact=True)).first.locator(
        "xpath=ancestor::div[3]"
    )


def test_the_pause_policy_is_picked_as_a_block_in_the_custom_run_form(prefect_stack, tmp_path):
    tag = uuid.uuid4().hex[:6]
    study_name, policy_name = f"form-{tag}", f"form-policy-{tag}"
    with webhook() as hook, get_client(sync_client=True) as client:
        PausePolicy(apprise_urls=[hook.url("form")]).save(policy_name)
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{prefect_stack.env['PREFECT_UI_URL']}/v2/deployments/deployment/{deployment.id}/run")
            page.get_by_text("Pause Policy (Optional)", exact=True).wait_for(timeout=30_000)
            for group, model in SETTING_GROUPS.items():  # each group, with its description
                assert page.get_by_text(f"{group} (Optional)", exact=True).is_visible(), group
                assert page.get_by_text(" ".join(model.__doc__.split()), exact=True).is_visible(), group
            for name, value in [
                ("study_name", study_name), ("N Trials", "2"), ("Max Epochs", "2"),
                ("Storage", f"sqlite:///{tmp_path}/studies.db"), ("Checkpoints", str(tmp_path / "checkpoints")),
            ]:
                _field(page, name).locator("textarea, input").first.fill(value)
            policy = _field(page, "Pause Policy")
            policy.get_by_role("tab", name="PausePolicy", exact=True).click()
            policy.get_by_text("Select a block...").click()
            page.get_by_role("option", name=policy_name).click()
            policy.scroll_into_view_if_needed()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "run-form-pause-policy-picker.png"))
            page.screenshot(path=str(SCREENSHOTS / "run-form-groups.png"), full_page=True)
            assert policy.get_by_text(policy_name).count() >= 1, "the picker shows the chosen block"
            of_deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
            earlier = {r.id for r in client.read_flow_runs(flow_run_filter=of_deployment)}
            submit = page.get_by_role("button", name="Submit", exact=True)
            submit.click()

            def submitted() -> list:
                runs = [r for r in client.read_flow_runs(flow_run_filter=of_deployment) if r.id not in earlier]
                return sorted(runs, key=lambda r: r.created)

            # Prefect 3.8's UI then opens the deployment's runs, 3.9's stays on the form, and the
            # run is named after the study only once it starts: it is found on the server. A
            # click the busy page did not take yet is clicked again, as a user would.
            try:
                runs = wait_for(submitted, timeout=30, what="the run the form submitted")
            except TimeoutError:
                page.screenshot(path=str(SCREENSHOTS / "run-form-not-submitted.png"), full_page=True)
                submit.click()
                runs = wait_for(submitted, timeout=60, what="the run the form submitted")
            submitted_run = runs[0]

        run = wait_for_state(submitted_run.id, "Completed", timeout=300)
        # The form sent a reference to the block; the study loaded it and recorded the name it
        # is saved under, which `intermission status`, `best`, `stop` and a Resume read.
        assert run.parameters["pausing"]["pause_policy"] == policy_name
        config = study_config_of(run)
        assert (config.pausing.pause_policy, config.budget.n_trials, config.training.max_epochs) == (policy_name, 2, 2)
        completed = wait_for(
            lambda: hook.messages(f"Study {study_name} completed"), timeout=60, what="the policy's notification"
        )
        assert "2 trials finished" in completed[0]["message"]
