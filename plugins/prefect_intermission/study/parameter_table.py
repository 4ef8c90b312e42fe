"""The study flow's parameters as a Markdown table, generated from `StudyConfig`.

The documentation site's table (docs/reference/parameters.md) is this output (a test keeps
them equal); after changing a setting, `make docs-reference` writes the new table there.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.fields import FieldInfo

from prefect_intermission.study.config import SETTING_GROUPS, StudyConfig


def parameter_table() -> str:
    """Every parameter of the study flow, group by group: its name, default and meaning."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for name, info in StudyConfig.model_fields.items():
        if name not in SETTING_GROUPS:
            rows.append(_row(f"`{name}`", "(required)", info))
    for group, model in SETTING_GROUPS.items():
        rows.append(f"| **`{group}`** | | **{' '.join((model.__doc__ or '').split())}** |")
        for name, info in model.model_fields.items():
            rows.append(_row(f"`{group}.{name}`", _default(info.get_default(call_default_factory=True)), info))
    return "\n".join(rows) + "\n"


def _row(name: str, default: str, info: FieldInfo) -> str:
    return f"| {name} | {default} | {(info.description or '').replace('|', '&#124;')} |"


def _default(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "(none)"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


if __name__ == "__main__":
    print(parameter_table(), end="")
