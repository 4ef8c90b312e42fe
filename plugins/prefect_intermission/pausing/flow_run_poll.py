"""One shared poll of flow-run states per process: the watchers' only periodic API reads.

Every watcher of a flow run's state (the study run's pause watcher, a trial run's look
at its own run and the study's, the study's look at its trial runs) takes a
`FlowRunWatch` from `shared_poll()` instead of reading the Prefect API itself. One
thread reads every watched run once per interval, however many watches want it, and
all the runs due together in one `read_flow_runs` request filtered on their ids; each
watch gets the readings of its run. A run the server does not know (any more) gets no
reading, as a failed request gives none.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from types import TracebackType
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import get_current_settings

logger = logging.getLogger(__name__)


class FlowRunWatch:
    """One watcher's view of one flow run, read by the shared poll every `every` seconds.

    `next` waits for a reading the watcher has not seen yet. Use it as a context
    manager (or `close` it): the poll stops reading a run nobody watches.
    """

    def __init__(self, poll: FlowRunPoll, flow_run_id: UUID, every: float) -> None:
        if not every > 0:
            raise ValueError(f"every must be > 0 seconds, but got {every=}.")
        self.flow_run_id = flow_run_id
        self.every = every
        self.due = 0.0  # time.monotonic() of its next read; the first is at once
        self._poll = poll
        self._changed = threading.Condition()
        self._latest: FlowRun | None = None
        self._readings = 0
        self._returned = 0
        self._closed = False

    @property
    def latest(self) -> FlowRun | None:
        """The newest reading of the run, or None before the first."""
        with self._changed:
            return self._latest

    def next(self, timeout: float) -> FlowRun | None:
        """The newest reading not returned yet, waiting up to `timeout` seconds for one;
        None when none came (a failed read, a closed watch)."""
        with self._changed:
            self._changed.wait_for(lambda: self._readings > self._returned or self._closed, max(timeout, 0.0))
            if self._readings == self._returned:
                return None
            self._returned = self._readings
            return self._latest

    def close(self) -> None:
        """Stop watching; a `next` waiting now returns None at once."""
        self._poll._remove(self)
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __enter__(self) -> FlowRunWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _deliver(self, flow_run: FlowRun) -> None:
        with self._changed:
            self._latest = flow_run
            self._readings += 1
            self._changed.notify_all()


class FlowRunPoll:
    """The thread that reads every watched flow run of one Prefect API.

    It runs while at least one watch is open and stops with the last one. Reads are
    aligned: when one run is due, every other run due within half the shortest interval
    is read in the same request, so watches of one interval share every request.
    `requests` counts the requests made (failed ones included).
    """

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        self._watches: list[FlowRunWatch] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, flow_run_id: UUID, *, every: float) -> FlowRunWatch:
        """Read flow run `flow_run_id` at least every `every` seconds from now on (the first
        reading at once), for the returned watch."""
        watch = FlowRunWatch(self, flow_run_id, every)
        with self._lock:
            self._watches.append(watch)
            if self._thread is None:
                # A copy of this context: Prefect's settings (the API URL) live there.
                self._thread = threading.Thread(
                    target=contextvars.copy_context().run, args=(self._run,),
                    name="intermission-flow-run-poll", daemon=True,
                )
                self._thread.start()
        self._wake.set()
        return watch

    def _remove(self, watch: FlowRunWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)
        self._wake.set()

    def _run(self) -> None:
        with get_client(sync_client=True) as client:
            while True:
                with self._lock:
                    if not self._watches:
                        self._thread = None
                        return
                    now = time.monotonic()
                    ahead = min(w.every for w in self._watches) / 2
                    due = [w for w in self._watches if w.due <= now + ahead]
                    for w in due:
                        w.due = now + w.every
                    sleep = min(w.due for w in self._watches) - now
                if due:
                    self._read(client, due)
                    continue
                self._wake.wait(max(sleep, 0.0))
                self._wake.clear()

    def _read(self, client: SyncPrefectClient, due: list[FlowRunWatch]) -> None:
        ids = list(dict.fromkeys(w.flow_run_id for w in due))
        self.requests += 1
        try:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
        except Exception:  # a flaky API must not stop training: the watches get no reading
            logger.debug("Could not read the watched flow runs' states", exc_info=True)
            return
        by_id = {run.id: run for run in runs}
        with self._lock:
            watches = list(self._watches)
        for watch in watches:  # a run read for one watch is news for every watch of it
            if (run := by_id.get(watch.flow_run_id)) is not None:
                watch._deliver(run)


_polls: dict[str, FlowRunPoll] = {}
_polls_lock = threading.Lock()


def shared_poll() -> FlowRunPoll:
    """This process's poll of the Prefect API the current settings point at."""
    api_url = str(get_current_settings().api.url)
    with _polls_lock:
        return _polls.setdefault(api_url, FlowRunPoll())
