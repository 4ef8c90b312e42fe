"""Listing swapped checkpoint bytes in a manifest entry, as the checkpoint store itself would."""

from __future__ import annotations

from typing import Any

import xxhash


def list_as_written(entry: dict[str, Any], data: bytes) -> None:
    """Make `entry` list `data`: its size and its XXH3-128, as a save writes them."""
    entry.pop("sha256", None)
    entry.update(size=len(data), xxh3_128=xxhash.xxh3_128(data).hexdigest())
