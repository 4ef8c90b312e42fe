"""A flow run's page in the Prefect UI, driven in Debian's headless Chromium with Playwright.

Both UIs that Prefect serves: the default one (`/v2/...`: Pause and Resume in the run's
⋮ menu, "Open menu") and the older one (`/runs/...`: Suspend and Resume buttons in the
run's header). Each click is the user's; each dialog is confirmed as the user does.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

#: Flags that keep Chromium from reaching for Google's hosts on a machine with no internet.
_CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium (`.ci/run` installs it), headless."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("Chromium is not installed: `apt-get install chromium` (.ci/run does).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=_CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class RunPage:
    """A flow run's page in one of the two UIs ("v2", the default, or "v1", the older one)."""

    def __init__(self, browser: Browser, ui_url: str, flow_run_id: UUID, ui: str) -> None:
        self.ui = ui
        self.url = f"{ui_url}/v2/runs/flow-run/{flow_run_id}" if ui == "v2" else f"{ui_url}/runs/flow-run/{flow_run_id}"
        self.page: Page = browser.new_page(viewport={"width": 1400, "height": 900})

    def open(self) -> RunPage:
        """Load (or reload) the page and wait until the run's header is drawn."""
        self.page.goto(self.url)
        self.page.get_by_text("Deployment", exact=False).first.wait_for(timeout=30_000)
        return self

    def pause(self, timeout_seconds: int | None = None) -> None:
        """Pause (v2's menu) or Suspend (v1's button); type `timeout_seconds` in the dialog's
        Timeout field, or leave its default; confirm."""
        if self.ui == "v2":
            self._menu_item("Pause")
        else:
            self.page.get_by_role("button", name="Suspend", exact=True).click()
        dialog = self.page.get_by_role("dialog")
        if timeout_seconds is not None:
            dialog.locator("input").first.fill(str(timeout_seconds))
        dialog.get_by_role("button", name="Pause Flow Run" if self.ui == "v2" else "Submit").click()
        dialog.wait_for(state="hidden")

    def resume_offered(self) -> bool:
        """Whether the page offers Resume (v2: in the run's menu; v1: a header button)."""
        if self.ui == "v2":
            trigger = self.page.get_by_role("button", name="Open menu")
            beside = trigger.bounding_box()
            trigger.click()
            item = self.page.get_by_role("menuitem", name="Resume")
            offered = item.count() == 1 and item.is_visible()
            # Closed with a click beside it, on the header's empty space; not with Escape: the run
            # graph takes that key too and goes full screen, and its canvas then takes every click.
            self.page.mouse.click(beside["x"] - 150, beside["y"] + beside["height"] / 2)
            self.page.get_by_role("menu").wait_for(state="hidden")
            return offered
        button = self.page.get_by_role("button", name="Resume", exact=True)
        return button.count() == 1 and button.is_visible()

    def resume(self) -> None:
        """Resume, confirmed in its dialog."""
        if self.ui == "v2":
            self._menu_item("Resume")
            confirm = "Resume"
        else:
            self.page.get_by_role("button", name="Resume", exact=True).click()
            confirm = "Submit"
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_role("button", name=confirm, exact=True).click()
        try:
            dialog.wait_for(state="hidden")
        except PlaywrightTimeoutError:
            # A page busy on a loaded machine may not have taken the click (CI's make test saw
            # the older UI's dialog stay open 30 s once): click again, as a user would.
            self.screenshot(f"resume-dialog-still-open-{self.ui}")
            dialog.get_by_role("button", name=confirm, exact=True).click()
            dialog.wait_for(state="hidden", timeout=60_000)

    def state_badge(self, timeout: float = 20) -> str:
        """The state name drawn in the run's header (waiting for the header to draw it)."""
        names = ("Running", "Suspended", "Paused", "Resuming", "Scheduled", "Pending", "Completed", "Failed")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in names:
                badge = self.page.get_by_text(name, exact=True)
                if badge.count() and badge.first.is_visible():
                    return name
            self.page.wait_for_timeout(250)
        return ""

    def tab_shows(self, tab: str, text: str) -> bool:
        """Open one of the run's tabs (Artifacts, Task Runs, Logs...); whether `text` appears in it."""
        self._open_tab(tab)
        try:
            self.page.get_by_text(text).first.wait_for(timeout=15_000)
        except PlaywrightTimeoutError:
            self.screenshot(f"missing-{tab.replace(' ', '-').lower()}")
            return False
        return True

    def screenshot(self, name: str) -> Path:
        """A PNG of the page under test-artifacts/screenshots/, to look at."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def _open_tab(self, tab: str) -> None:
        if self.ui == "v2":
            self.page.get_by_role("tab", name=tab, exact=True).click()
        else:
            self.page.get_by_text(tab, exact=True).first.click()

    def _menu_item(self, name: str) -> None:
        self.page.get_by_role("button", name="Open menu").click()
        self.page.get_by_role("menuitem", name=name).click()
