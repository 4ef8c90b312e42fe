"""The package's public API is what `__all__` lists, and the collection entry point finds its blocks."""

from __future__ import annotations

from importlib.metadata import entry_points

import prefect_intermission


def test_all_lists_exactly_the_public_names():
    public = {name for name in dir(prefect_intermission) if not name.startswith("_")}
    assert set(prefect_intermission.__all__) == public
    for name in prefect_intermission.__all__:  # each one resolves to what it names
        assert getattr(prefect_intermission, name).__name__ == name


def test_registered_as_a_prefect_collection():
    names = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert names.get("prefect_intermission") == "prefect_intermission.blocks"
