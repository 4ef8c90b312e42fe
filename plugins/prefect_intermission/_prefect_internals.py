"""The one module that uses Prefect's private API.

`PauseOnSignals` (pausing/interrupts.py) shares SIGTERM with Prefect's engine, which
needs four things Prefect does not publish: the control intent its runner committed,
a way to commit the intent "cancel" as Prefect's control listener would, Prefect's
own SIGTERM handler, to recognise it, and a way to have the control listener acknowledge
a `prefect flow-run execute` supervisor's intent while our handler is installed. Our
flows' runs also end without the engine's wait for its heartbeat thread
(flows/process_exit.py). A pause policy's cron expressions are read by the code Prefect's
server reads a deployment's cron schedule with (`next_cron_time`), whose date generator is
private, and a block's saved name is a private attribute of the block (`saved_block_name`).
Each is wrapped here in a small function.

The supported Prefect releases (pyproject.toml: 3.7.1 up to 4) differ here, and this module
looks for the feature rather than the version: before 3.8.1 a `prefect flow-run execute`
supervisor sends no control intents of its own ("reschedule", "relinquish"; Prefect's `Intent`
type then allows only "cancel"), so there is none to acknowledge (`SUPERVISOR_INTENTS_SENT`);
the `Intent` type lives in `prefect._internal.attempt_control` since 3.8.x, in
`prefect._internal.control_listener` before.

`check_prefect_internals()` verifies that each private name still exists and can be
called as this module calls it; tests/integration/test_prefect_internals.py runs it and exercises
every wrapper, so a Prefect upgrade that changes them fails there, naming what changed.
"""

from __future__ import annotations

import importlib
import inspect
import signal
import threading
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from socket import socket

import prefect
from prefect._internal import control_listener
from prefect.utilities import engine as prefect_engine

from prefect_intermission.errors import IntermissionError

#: The Prefect releases this module was checked against: the floor (`make test-floor`) and
#: the newest (`make test`).
CHECKED_PREFECT_RELEASES = "3.7.1 and 3.9.1"

# (module, name, the arguments this module calls it with)
_PRIVATE_CALLABLES: tuple[tuple[str, str, tuple[object, ...]], ...] = (
    ("prefect._internal.control_listener", "get_intent", ()),
    ("prefect._internal.control_listener", "_set_intent", ("cancel",)),
    ("prefect.utilities.engine", "_prefect_sigterm_handler", (signal.SIGTERM, None)),
    ("prefect._internal.control_listener", "_acknowledge_intent", (None, "reschedule")),
    ("prefect._internal.control_listener", "clear_intent", ()),
    ("prefect.flow_engine", "_send_heartbeats", (None, False)),
)
#: How `next_cron_time` asks Prefect's server schedule for dates (it reads `.cron`, `.timezone`).
_CRON_DATES = ("prefect.server.schemas.schedules", "CronSchedule", "_get_dates_generator")

#: The intents of a `prefect flow-run execute` supervisor stopped by SIGTERM, as
#: `PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR` names them: "reschedule" (the supervisor puts
#: the run back to Scheduled) and "relinquish" (it leaves the run to the infrastructure's retry).
SUPERVISOR_INTENTS = frozenset({"reschedule", "relinquish"})


def intent_type_module() -> types.ModuleType:
    """The Prefect module that defines the control `Intent` type: `prefect._internal.attempt_control`
    where it exists (3.8.x and later), else `prefect._internal.control_listener`."""
    try:
        return importlib.import_module("prefect._internal.attempt_control")
    except ImportError:
        return control_listener


def _control_intents() -> tuple[object, ...]:
    """The values Prefect's `Intent` type allows, or () if it cannot be read."""
    return typing.get_args(getattr(intent_type_module(), "Intent", None))


def supervisor_intents_sent() -> bool:
    """Whether this Prefect's `prefect flow-run execute` sends its SIGTERM behaviour as a control
    intent before passing SIGTERM on (3.8.1 and later). Before, a "reschedule" supervisor
    proposes AwaitingRetry and sends SIGTERM with no intent, and "relinquish" does not exist."""
    return bool(SUPERVISOR_INTENTS & set(_control_intents()))


class PrefectInternalsChanged(IntermissionError):
    """The installed Prefect no longer has a private name prefect-intermission relies on."""


def control_intent() -> str | None:
    """The control intent this process's Prefect runner committed ("cancel", ...), or None.

    Relies on `prefect._internal.control_listener.get_intent()`: once it is not None,
    Prefect's runner is driving the termination and the next SIGTERM is Prefect's own.
    """
    return control_listener.get_intent()


def commit_cancel_intent() -> None:
    """Commit the control intent "cancel", as Prefect's control listener does on a cancel.

    Relies on `prefect._internal.control_listener._set_intent("cancel")`: with an intent
    committed, the engine's `capture_sigterm()` does not pass the SIGTERM on to the
    handler it replaced, and the engine ends the run Cancelled instead of Crashed.
    """
    control_listener._set_intent("cancel")


def is_prefect_sigterm_handler(handler: object) -> bool:
    """Whether `handler` is the SIGTERM handler Prefect's engine installs while a flow runs.

    Relies on `prefect.utilities.engine._prefect_sigterm_handler`, the function
    `capture_sigterm()` installs (it raises `TerminationSignal`); Prefect's control
    listener acknowledges a runner's intent only while it is installed.
    """
    return handler is prefect_engine._prefect_sigterm_handler


_intent_takers: list[Callable[..., object]] = []
_prefect_acknowledge: Callable[[socket, str], bool] | None = None


@contextmanager
def acknowledging_supervisor_intents(handler: Callable[..., object]) -> Iterator[None]:
    """While `handler` is the SIGTERM handler, acknowledge a supervisor's "reschedule" or "relinquish".

    `prefect flow-run execute` sends its SIGTERM behaviour as a control intent to the flow's
    process before passing SIGTERM on. Prefect's control listener acknowledges it only while
    Prefect's own SIGTERM handler is installed; unacknowledged, the supervisor kills the
    process at once (SIGKILL), with no time to store anything. Inside this context the
    listener acknowledges these two intents, and commits them as it would, while `handler` is
    installed; every other intent, or another handler, is left to Prefect's own rule. (A
    supervisor of Prefect before 3.8.1 sends no such intents: there is nothing to acknowledge.)

    Relies on `prefect._internal.control_listener._acknowledge_intent(sock, intent)`, which is
    replaced by a function that sends the acknowledgement byte itself.
    """
    global _prefect_acknowledge
    if _prefect_acknowledge is None:
        _prefect_acknowledge = control_listener._acknowledge_intent
        control_listener._acknowledge_intent = _acknowledge_intent
    _intent_takers.append(handler)
    try:
        yield
    finally:
        _intent_takers.remove(handler)


def _acknowledge_intent(sock: socket, intent: str) -> bool:
    """Prefect's control listener's acknowledgement, extended to the handlers taking supervisor intents."""
    assert _prefect_acknowledge is not None
    try:
        installed = signal.getsignal(signal.SIGTERM)
    except ValueError:
        installed = None
    if intent not in SUPERVISOR_INTENTS or installed not in _intent_takers:
        return _prefect_acknowledge(sock, intent)
    control_listener._set_intent(intent)  # type: ignore[arg-type]
    try:
        sock.sendall(b"a")  # the acknowledgement byte of Prefect's control protocol
    except OSError:
        control_listener.clear_intent()
        return False
    return True


_heartbeat_skips: list[Callable[[typing.Any], bool]] = []


def heartbeats_not_awaited_when(skip: Callable[[typing.Any], bool]) -> None:
    """Have Prefect's flow engine not wait for its heartbeat thread at the end of a run when
    `skip(engine)` (the run's flow engine).

    The engine joins that thread (which sleeps in 1 s steps) when the run ends, before it
    logs the run's final state: up to a second, half a second on average. Without the join
    the thread still stops by itself at its next step, emitting nothing more (the stop is
    set, and the run's state is final); it is a daemon, so it never holds a process up.

    Relies on `prefect.flow_engine._send_heartbeats(engine, join_on_exit)`, the context
    manager the sync engine's `run_context` enters around the flow function, and on its
    thread running `heartbeat_loop`; it is replaced by one that joins that thread itself
    unless `skip()`.
    """
    from prefect import flow_engine

    prefect_send_heartbeats = getattr(flow_engine, "_send_heartbeats", None)
    if prefect_send_heartbeats is None:  # gone in this Prefect: check_prefect_internals() says so
        return
    if not _heartbeat_skips:
        flow_engine._send_heartbeats = _sending_heartbeats(prefect_send_heartbeats)
    _heartbeat_skips.append(skip)


def _sending_heartbeats(prefect_send_heartbeats: Callable[..., typing.ContextManager[None]]) -> Callable[..., typing.ContextManager[None]]:
    """Prefect's `_send_heartbeats`, joining its thread unless a skip says not to."""

    @contextmanager
    def send_heartbeats(engine: object, join_on_exit: bool = True) -> Iterator[None]:
        before = set(threading.enumerate())
        heartbeat: list[threading.Thread] = []
        try:
            with prefect_send_heartbeats(engine, join_on_exit=False):
                heartbeat = [t for t in threading.enumerate() if t not in before and _is_heartbeat(t)]
                yield
        finally:  # Prefect's own context has told its thread to stop
            if join_on_exit and not any(skip(engine) for skip in _heartbeat_skips):
                for thread in heartbeat:
                    thread.join(timeout=2)  # as Prefect's own does

    return send_heartbeats


def _is_heartbeat(thread: threading.Thread) -> bool:
    """Whether `thread` runs Prefect's flow-run `heartbeat_loop`."""
    args = getattr(thread, "_args", ())
    return bool(args) and getattr(args[0], "__name__", None) == "heartbeat_loop"


def next_cron_time(cron: str, zone: str, after: datetime) -> datetime:
    """The first time after `after` that a Prefect deployment's schedule `cron` in time zone
    `zone` gives, in UTC: read by Prefect's own server code (`CronSchedule`), so a pause
    policy and the `prefect.yaml` schedules beside it read an expression the same way."""
    schedules = importlib.import_module(_CRON_DATES[0])  # Prefect's server schemas: only when needed
    schedule = getattr(schedules, _CRON_DATES[1])(cron=cron, timezone=zone)
    for date in getattr(schedule, _CRON_DATES[2])(n=5, start=after):
        at = datetime.fromtimestamp(date.timestamp(), timezone.utc)
        if at > after:  # "on or after" `after`; and on a daylight-saving night, once, before it
            return at
    raise ValueError(f"Prefect's cron schedule gives no time after {after.isoformat()} for {cron!r}")


def saved_block_name(block: object) -> str | None:
    """The name a block was loaded or saved under (`Block._block_document_name`); None if never saved.

    Prefect loads a block chosen in the run form's picker (`{"$ref": ...}`) with its name there."""
    name = getattr(block, "_block_document_name", None)
    return name if isinstance(name, str) and name else None


def check_prefect_internals() -> None:
    """Verify that the installed Prefect still has each private name, callable as used here.

    Raises:
        PrefectInternalsChanged: A name is gone, is no longer callable, or no longer
            accepts the arguments this module passes; the message names each one.
    """
    problems = [p for module, name, args in _PRIVATE_CALLABLES if (p := _problem(module, name, args))]
    from prefect.blocks.core import Block

    if "_block_document_name" not in getattr(Block, "__private_attributes__", {}):
        problems.append("prefect.blocks.core.Block._block_document_name is gone")
    try:
        next_cron_time("0 22 * * *", "Europe/Berlin", datetime(2026, 3, 29, 9, tzinfo=timezone.utc))
    except Exception as e:
        problems.append(f"{'.'.join(_CRON_DATES)}(n=..., start=...) no longer gives cron dates ({e!r})")
    intents = _control_intents()
    # Before 3.8.1 the type allows "cancel" alone; from then on, both supervisor intents too.
    expected = ("cancel", *sorted(SUPERVISOR_INTENTS)) if supervisor_intents_sent() else ("cancel",)
    for intent in expected:
        if intent not in intents:
            problems.append(
                f"{intent_type_module().__name__}.Intent no longer includes {intent!r} (it is {intents!r})"
            )
    if problems:
        raise PrefectInternalsChanged(
            f"The installed Prefect ({prefect.__version__}) changed private API prefect-intermission "
            f"relies on (checked against Prefect {CHECKED_PREFECT_RELEASES}): {'; '.join(problems)}. "
            "Adapt prefect_intermission/_prefect_internals.py."
        )


def _problem(module_name: str, name: str, args: tuple[object, ...]) -> str | None:
    """What is wrong with `module_name.name` called with `args`, or None."""
    where = f"{module_name}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return f"{module_name} cannot be imported ({e})"
    if not hasattr(module, name):
        return f"{where} is gone"
    target = getattr(module, name)
    if not callable(target):
        return f"{where} is no longer callable (it is {target!r})"
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to read (a builtin): callable is all we know
        return None
    try:
        signature.bind(*args)
    except TypeError as e:
        return f"{where}{signature} can no longer be called with {args!r} ({e})"
    return None
