"""Which checkpoints of a trial stay listed after a new one is written.

Kept: the last `keep_last` finished epochs, the one marked best (only the newest best is
marked), and a checkpoint taken within an epoch until any later checkpoint supersedes it.
Checkpoints of the new one's epoch or later are from an attempt that was cut off: obsolete.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from prefect_intermission.errors import ConfigurationError

#: How many of a trial's last checkpoints are kept besides its best epoch's: at least one.
KeepLast = Annotated[int, Field(ge=1)]


def checked_keep_last(keep_last: int) -> int:
    """`keep_last`, or a `ConfigurationError` when it breaks `KeepLast`'s rule."""
    try:
        return TypeAdapter(KeepLast).validate_python(keep_last)
    except ValidationError as e:
        raise ConfigurationError(f"keep_last must be >= 1, but got {keep_last=}.") from e


def retained(listed: list[dict[str, Any]], entry: dict[str, Any], *, keep_last: int) -> list[dict[str, Any]]:
    """The manifest's entries once `entry` (a new checkpoint) is written, oldest first."""
    epoch, best, mid_epoch = int(entry["epoch"]), bool(entry.get("best")), bool(entry.get("mid_epoch"))
    previous = sorted(
        (e for e in listed if int(e["epoch"]) < epoch and not e.get("mid_epoch")),
        key=lambda e: int(e["epoch"]),
    )
    if best:
        previous = [{k: v for k, v in e.items() if k != "best"} for e in previous]
    finished = previous if mid_epoch else [*previous, entry]
    newest = len(finished) - keep_last
    kept = [e for i, e in enumerate(finished) if i >= newest or e.get("best")]
    if mid_epoch:
        kept.append(entry)
    return kept
