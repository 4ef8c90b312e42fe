"""Old names that still work for a while, each saying once per process what replaced it."""

from __future__ import annotations

import warnings

_warned: set[str] = set()


def warn_deprecated(old: str, new: str) -> None:
    """Warn that `old` is deprecated in favour of `new`, once per process for each `old`.

    A `FutureWarning`, which Python shows by default (a `DeprecationWarning` raised inside an
    imported objective would not be), pointing at the line that called `old`.
    """
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"{old} is deprecated; use {new} instead, which does the same. {old} will be removed in a "
        "future release.",
        FutureWarning,
        stacklevel=3,
    )
