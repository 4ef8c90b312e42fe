"""`make docs-screenshots`: the site's pictures, taken from a real study on a local stack.

Starts a local Prefect server, work pool and worker as `make demo` does (under
.intermission/docs-prefect), deploys prefect.yaml's `digits-demo` and `resume-study`, and in
Debian's headless Chromium: opens the deployment's run form, starts a short study, pauses it
from the run's ⋮ menu (the pause dialog), shows the paused run's page, its log and its
artifacts, resumes it from the same menu, waits for it to complete and opens
`intermission report`'s HTML. The PNGs are written to docs/images/ and committed, so that
`make docs` needs no server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deployments.local_stack import LocalPrefect
from deployments.ui_actions import (
    wait_for_state,
    wait_until_mid_training,
    wait_until_suspended_by_study,
)
from tests.e2e.browser import RunPage, chromium

IMAGES = ROOT / "docs" / "images"
STORAGE = f"sqlite:///{ROOT}/.intermission/studies.db"
VIEWPORT = {"width": 1400, "height": 900}


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def deployment_id(name: str) -> str:
    with get_client(sync_client=True) as client:
        return str(client.read_deployment_by_name(name).id)


def run_form(browser, ui_url: str) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{ui_url}/v2/deployments/deployment/{deployment_id('pausable-study/digits-demo')}/run")
    page.get_by_text("Pause Policy (Optional)", exact=True).wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(IMAGES / "run-form.png"))
    page.close()


def pause(run: RunPage) -> None:
    run._menu_item("Pause")
    dialog = run.page.get_by_role("dialog")
    dialog.wait_for()
    run.page.wait_for_timeout(500)
    run.page.screenshot(path=str(IMAGES / "pause-dialog.png"))
    dialog.get_by_role("button", name="Pause Flow Run").click()
    dialog.wait_for(state="hidden")
    run.page.close()


def paused_and_resume(browser, ui_url: str, run_id) -> None:
    run = RunPage(browser, ui_url, run_id, "v2").open()
    run.page.wait_for_timeout(2000)
    run.page.screenshot(path=str(IMAGES / "paused-run.png"))
    for tab, seen, name in (("Logs", "Pause requested", "paused-run-log.png"), ("Artifacts", "pause", "paused-run-artifacts.png")):
        if not run.tab_shows(tab, seen):
            raise RuntimeError(f"the run's {tab} tab does not show {seen!r}")
        # The log from the pause's first line on (the page scrolls its log with the window).
        run.page.get_by_text(seen).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        run.page.wait_for_timeout(1500)
        run.page.screenshot(path=str(IMAGES / name))
    say("Resuming from the run's menu")
    run.open()
    run.resume()
    run.page.close()


def report(study_name: str, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        subprocess.run(
            [str(Path(sys.executable).parent / "intermission"), "report", study_name, "--output", str(html),
             "--storage", STORAGE],
            check=True, env=env, cwd=ROOT,
        )
        subprocess.run(
            [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp}/chromium", f"--screenshot={IMAGES / 'report.png'}",
             "--window-size=1280,1900", "--virtual-time-budget=5000", html.as_uri()],
            check=True, capture_output=True, timeout=120,
        )


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    study_name = f"docs-{datetime.now():%Y%m%d-%H%M%S}"
    with LocalPrefect(ROOT / ".intermission" / "docs-prefect") as prefect, \
            temporary_settings({PREFECT_API_URL: prefect.api_url}):
        ui_url = prefect.env["PREFECT_UI_URL"]
        say("Deploying digits-demo and resume-study; starting a worker")
        prefect.deploy("digits-demo", "resume-study")
        prefect.start_worker()
        with chromium() as browser:
            say("The run form")
            run_form(browser, ui_url)
            say(f"Running study {study_name!r}: 4 trials of 30 epochs, 2 at a time, paused from the UI")
            # The run's page is open before its trials train, so the click comes mid-epoch (a digits
            # epoch takes a tenth of a second). Prefect's sync client: run_deployment would be
            # async here, inside the event loop Playwright's sync API holds.
            with get_client(sync_client=True) as client:
                run = client.create_flow_run_from_deployment(
                    deployment_id("pausable-study/digits-demo"),
                    parameters={"study_name": study_name, "budget": {"n_trials": 4}, "training": {"max_epochs": 30}},
                )
            page = RunPage(browser, ui_url, run.id, "v2").open()
            deadline = time.monotonic() + 120
            while page.state_badge() != "Running":  # the UI offers Pause to a Running run
                if time.monotonic() > deadline:
                    raise RuntimeError(f"flow run {run.id} did not start running")
                page.page.wait_for_timeout(250)
            wait_until_mid_training(STORAGE, study_name, min_epochs=1)
            say("The pause dialog")
            pause(page)
        wait_until_suspended_by_study(run.id)
        say("Paused; the paused run's page, log and artifacts")
        with chromium() as browser:
            paused_and_resume(browser, ui_url, run.id)
        wait_for_state(run.id, "Completed", timeout=600)
        say("Completed; the HTML report")
        report(study_name, prefect.env)
    for image in sorted(IMAGES.glob("*.png")):
        print(f"    {image.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
