"""The private Prefect API in prefect_intermission/_prefect_internals.py still exists and still
behaves as the package relies on: a Prefect upgrade that changes it fails here, naming it."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
import typing
from uuid import uuid4

import prefect
import pytest
from packaging.version import Version
from prefect import flow_engine
from prefect._internal import control_listener
from prefect.exceptions import TerminationSignal
from prefect.utilities import engine as prefect_engine
from prefect.utilities.engine import capture_sigterm
from prefect_intermission._prefect_internals import (
    PrefectInternalsChanged,
    check_prefect_internals,
    commit_cancel_intent,
    control_intent,
    intent_type_module,
    is_prefect_sigterm_handler,
    supervisor_intents_sent,
)
from prefect_intermission.pausing import interrupts
from prefect_intermission.pausing.interrupts import PauseOnSignals, supervisor_intent
from prefect_intermission.training.pause_signal import PauseSignal


@pytest.fixture
def sigterm_recorder():
    """SIGTERMs this process gets, recorded by a handler installed for the test (not the default,
    which would end pytest); the handler and Prefect's control intent are reset afterwards."""
    control_listener.clear_intent()
    received: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, before)
        control_listener.clear_intent()


def test_the_installed_prefect_has_every_private_name_the_package_uses():
    check_prefect_internals()


def test_supervisor_intents_are_expected_exactly_where_prefects_supervisor_sends_them():
    """From 3.8.1 on, `prefect flow-run execute` announces "reschedule" or "relinquish" through the
    control channel (a byte the listener maps to the intent); before, it sends none."""
    listener_bytes = getattr(intent_type_module(), "INTENT_FOR_BYTE", None) or control_listener._INTENT_FOR_BYTE
    assert supervisor_intents_sent() == ({"reschedule", "relinquish"} <= set(listener_bytes.values()))
    assert "cancel" in listener_bytes.values()
    # A later Prefect that stopped sending them would leave a SIGTERM'd run unacknowledged.
    assert supervisor_intents_sent() == (Version(prefect.__version__) >= Version("3.8.1"))


def test_a_committed_cancel_intent_is_read_back_by_the_package_and_by_prefects_engine(sigterm_recorder):
    assert control_intent() is None
    commit_cancel_intent()
    assert control_intent() == "cancel"
    assert flow_engine._termination_intent() == "cancel", (
        "Prefect's flow engine no longer reads the intent set by control_listener._set_intent"
    )


def test_prefects_sigterm_handler_is_recognised_only_while_prefect_installs_it(sigterm_recorder):
    assert not is_prefect_sigterm_handler(signal.getsignal(signal.SIGTERM))
    with capture_sigterm():
        assert is_prefect_sigterm_handler(signal.getsignal(signal.SIGTERM)), (
            "capture_sigterm() no longer installs prefect.utilities.engine._prefect_sigterm_handler"
        )
    assert not is_prefect_sigterm_handler(signal.getsignal(signal.SIGTERM))


def _sigterm_in_capture_sigterm(received: list[int]) -> None:
    """Send SIGTERM while Prefect's engine handles it; wait until the replaced handler may have run."""
    with pytest.raises(TerminationSignal), capture_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # Prefect's handler raises TerminationSignal here
    deadline = time.monotonic() + 1
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)


def test_with_an_intent_prefect_keeps_its_sigterm_from_the_handler_it_replaced(sigterm_recorder):
    _sigterm_in_capture_sigterm(sigterm_recorder)
    assert sigterm_recorder == [signal.SIGTERM], "without an intent, Prefect passes SIGTERM on"
    commit_cancel_intent()
    _sigterm_in_capture_sigterm(sigterm_recorder)
    assert sigterm_recorder == [signal.SIGTERM], (
        "with a committed intent, Prefect's capture_sigterm() passed SIGTERM on all the same"
    )


def test_a_cancellation_sigterm_under_pause_on_signals_reaches_prefect_as_a_cancel(sigterm_recorder, monkeypatch):
    monkeypatch.setattr(interrupts, "flow_run_is_cancelling", lambda flow_run_id: True)
    pause = PauseSignal()
    with pytest.raises(TerminationSignal), capture_sigterm(), PauseOnSignals(pause, uuid4()):
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the helper thread sends it again; Prefect's raises
            time.sleep(0.05)
    assert control_intent() == "cancel"
    assert sigterm_recorder == [] and not pause.is_requested()


@pytest.fixture
def control_socket():
    """Both ends of a connection like the one between `prefect flow-run execute` and the flow's process."""
    ours, supervisor = socket.socketpair()
    supervisor.settimeout(1)
    try:
        yield ours, supervisor
    finally:
        ours.close()
        supervisor.close()


def _acknowledges(control_socket, intent: str) -> bytes | None:
    """The byte the flow's process answers a supervisor's `intent` with, or None if it refuses it."""
    ours, supervisor = control_socket
    if not control_listener._acknowledge_intent(ours, intent):
        return None
    return supervisor.recv(1)


def test_a_supervisors_reschedule_is_acknowledged_while_pause_on_signals_handles_sigterm(
    sigterm_recorder, control_socket
):
    with capture_sigterm():
        prefect_ack = _acknowledges(control_socket, "reschedule")  # as Prefect itself answers
        control_listener.clear_intent()
    assert prefect_ack is not None

    with capture_sigterm(), PauseOnSignals(PauseSignal(), uuid4()):
        # Unacknowledged, `prefect flow-run execute` kills the process at once, with nothing stored.
        assert _acknowledges(control_socket, "reschedule") == prefect_ack
        assert control_intent() == supervisor_intent() == "reschedule"
        control_listener.clear_intent()
        assert _acknowledges(control_socket, "cancel") is None, "a runner's cancel stays Prefect's to answer"
    assert _acknowledges(control_socket, "relinquish") is None, "acknowledged with no study to pause"


def test_a_sigterm_after_a_supervisors_reschedule_pauses_the_study(sigterm_recorder, monkeypatch):
    monkeypatch.setattr(interrupts, "flow_run_is_cancelling", lambda flow_run_id: False)
    pause = PauseSignal()
    with capture_sigterm(), PauseOnSignals(pause, uuid4()):
        control_listener._set_intent("reschedule")
        os.kill(os.getpid(), signal.SIGTERM)
        assert pause.wait(10), "SIGTERM requested no pause"
    assert pause.reason == "signal" and sigterm_recorder == []


# -- the check fails loudly, naming what changed --------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (control_listener, "get_intent"),
        (control_listener, "_set_intent"),
        (control_listener, "clear_intent"),
        (prefect_engine, "_prefect_sigterm_handler"),
    ],
)
def test_a_private_name_that_is_gone_is_named(monkeypatch, module, name):
    monkeypatch.delattr(module, name)
    with pytest.raises(PrefectInternalsChanged, match=re.escape(f"{module.__name__}.{name} is gone")):
        check_prefect_internals()


def test_a_private_function_called_differently_is_named(monkeypatch):
    monkeypatch.setattr(control_listener, "_set_intent", lambda value, reason: None)
    with pytest.raises(
        PrefectInternalsChanged,
        match=r"prefect\._internal\.control_listener\._set_intent\(value, reason\) can no longer be "
        r"called with \('cancel',\)",
    ):
        check_prefect_internals()


def test_a_private_name_that_is_no_longer_callable_is_named(monkeypatch):
    monkeypatch.setattr(prefect_engine, "_prefect_sigterm_handler", None)
    with pytest.raises(PrefectInternalsChanged, match=r"_prefect_sigterm_handler is no longer callable"):
        check_prefect_internals()


def test_a_private_module_that_is_gone_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect._internal.control_listener", None)
    with pytest.raises(PrefectInternalsChanged, match=r"prefect\._internal\.control_listener cannot be imported"):
        check_prefect_internals()


def test_an_intent_type_without_cancel_is_named(monkeypatch):
    monkeypatch.setattr(intent_type_module(), "Intent", str)
    with pytest.raises(PrefectInternalsChanged, match=r"Intent no longer includes 'cancel'"):
        check_prefect_internals()


def test_an_intent_type_without_reschedule_is_named(monkeypatch):
    monkeypatch.setattr(intent_type_module(), "Intent", typing.Literal["cancel", "relinquish"])
    with pytest.raises(PrefectInternalsChanged, match=r"Intent no longer includes 'reschedule'"):
        check_prefect_internals()


def test_the_engine_still_waits_for_its_heartbeat_thread_unless_told_not_to(prefect_server):
    """The replaced `_send_heartbeats` still runs Prefect's heartbeat thread (the one it can
    name) and, with no skip in effect, waits for it as Prefect's own does: until it ends, or
    for 2 s when an emission in flight holds it up longer."""
    import threading
    import time

    from prefect import flow
    from prefect_intermission._prefect_internals import (
        _is_heartbeat,
        heartbeats_not_awaited_when,
    )

    heartbeats_not_awaited_when(lambda engine: False)
    earlier = {t for t in threading.enumerate() if _is_heartbeat(t)}  # other runs' may still be ending
    seen: list[threading.Thread] = []
    returned: list[float] = []

    @flow(persist_result=False)
    def beating() -> None:
        seen.extend(t for t in threading.enumerate() if _is_heartbeat(t) and t not in earlier)
        returned.append(time.monotonic())

    beating()
    waited = time.monotonic() - returned[0]
    assert len(seen) == 1, "Prefect's heartbeat thread no longer runs `heartbeat_loop`"
    assert not seen[0].is_alive() or waited >= 2, "the engine returned before its heartbeat thread ended"


def test_a_run_of_a_flow_of_ours_ends_without_waiting_for_the_heartbeat_thread(prefect_server):
    """The heartbeat thread sleeps in 1 s steps; a run of one of this package's flows returns
    while it still sleeps (it stops by itself at its next step), any other run after it ended
    (or after Prefect's 2 s wait, when an emission in flight holds it up longer)."""
    import threading
    import time

    import prefect_intermission.flows.process_exit  # noqa: F401  # installs the rule, as our flows do
    from prefect import flow
    from prefect_intermission._prefect_internals import _is_heartbeat

    earlier = {t for t in threading.enumerate() if _is_heartbeat(t)}  # other runs' may still be ending
    seen: list[threading.Thread] = []
    returned: list[float] = []

    def look() -> None:
        seen.extend(t for t in threading.enumerate() if _is_heartbeat(t) and t not in earlier)
        returned.append(time.monotonic())

    look.__module__ = "prefect_intermission.flows.probe"  # as if defined in this package
    flow(persist_result=False)(look)()
    assert len(seen) == 1 and seen[0].is_alive(), "the run waited for its heartbeat thread"
    seen[0].join(timeout=30)
    assert not seen[0].is_alive(), "the heartbeat thread did not stop by itself"

    def other() -> None:
        seen.extend(t for t in threading.enumerate() if _is_heartbeat(t) and t not in earlier and t not in seen)
        returned.append(time.monotonic())

    flow(persist_result=False)(other)()
    waited = time.monotonic() - returned[1]
    assert len(seen) == 2, "another flow's run no longer runs a heartbeat thread"
    assert not seen[1].is_alive() or waited >= 2, "another flow's run no longer waits for it"
