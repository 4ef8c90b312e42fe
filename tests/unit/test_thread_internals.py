"""The private name prefect_intermission/_threads.py clears in forked DataLoader workers
(`threading._threading_atexits`) still holds the exit hooks: a Python release that moves it
fails here, naming it."""

from __future__ import annotations

import threading

import pytest

from prefect_intermission._threads import check_thread_exit_hooks, drop_inherited_exit_hooks


def test_the_running_python_keeps_thread_exit_hooks_where_we_clear_them():
    check_thread_exit_hooks()


def test_dropping_the_inherited_hooks_forgets_a_registered_one(monkeypatch):
    hooks: list = []
    monkeypatch.setattr(threading, "_threading_atexits", hooks)
    threading._register_atexit(print)  # what Prefect's services do through concurrent.futures
    assert len(hooks) == 1
    drop_inherited_exit_hooks()
    assert hooks == []


def test_a_python_that_moved_them_is_named(monkeypatch):
    monkeypatch.delattr(threading, "_threading_atexits")
    with pytest.raises(RuntimeError, match="threading._threading_atexits"):
        check_thread_exit_hooks()
    drop_inherited_exit_hooks()  # and the workaround does nothing instead of failing
