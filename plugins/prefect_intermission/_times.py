"""Times as people read them: `2026-12-07 21:30:00 CET`, to the second, with the zone shown.

Every time a message, table, summary or report shows goes through `shown_time`; what
machines read (`status --json`, events, flow-run parameters) stays ISO 8601 with its offset.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

#: How a time reads: date, time to the second, and the zone's abbreviation (or offset).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def shown_time(moment: datetime | str, zone: str | None = None) -> str:
    """`moment` as people read it, e.g. `2026-12-07 21:30:00 CET`: in the IANA time zone
    `zone`, by default this machine's (the TZ environment variable decides), to the second.

    `moment` may be an ISO 8601 string, as the study stores times; one that does not parse
    is shown as it is. A time without an offset is this machine's local time (as Optuna
    records trial starts).
    """
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    return moment.astimezone(ZoneInfo(zone) if zone else None).strftime(TIME_FORMAT)
