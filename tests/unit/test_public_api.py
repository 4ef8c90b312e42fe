"""The package's public API is what `__all__` lists, and the collection entry point finds its blocks."""

from __future__ import annotations

from importlib.metadata import entry_points, version

import pytest

import prefect_intermission
from prefect_intermission.cli.commands import main


def test_all_lists_exactly_the_public_names():
    public = {name for name in dir(prefect_intermission) if not name.startswith("_")}
    assert set(prefect_intermission.__all__) == public
    for name in prefect_intermission.__all__:  # each one resolves to what it names
        assert getattr(prefect_intermission, name).__name__ == name


def test_registered_as_a_prefect_collection():
    names = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert names.get("prefect_intermission") == "prefect_intermission.blocks"


def test_version_is_the_installed_distributions():
    assert prefect_intermission.__version__ == version("prefect-intermission")


def test_intermission_version_prints_it(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"intermission {version('prefect-intermission')}\n"
