"""The automation recipes in deployments/automations are what `prefect automation create
--from-file` accepts once their placeholders are filled, and refuses before (a recipe created
unfilled would point at nothing and never say so). tests/e2e/test_automations.py fires them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pydantic
import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore
from prefect.server.events.schemas.automations import AutomationCore as ServerAutomationCore

RECIPES = sorted((Path(__file__).resolve().parents[2] / "deployments" / "automations").glob("*.yaml"))
#: A recipe's placeholders: the ids its comments say how to find.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]*_ID\b")


def test_there_are_the_three_recipes():
    assert [r.name for r in RECIPES] == [
        "notify-team-when-a-study-pauses.yaml",
        "pause-a-study-when-its-gpu-is-needed.yaml",
        "resume-a-study-paused-for-8-hours.yaml",
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_a_recipe_is_created_once_its_placeholders_are_filled_and_not_before(recipe: Path):
    text = recipe.read_text()
    assert yaml.safe_load(text)["name"] == recipe.stem, "the automation is named as its file"
    assert f"prefect automation create --from-file deployments/automations/{recipe.name}" in text
    placeholders = set(PLACEHOLDER.findall(text))
    if placeholders:
        with pytest.raises(pydantic.ValidationError, match="valid UUID"):
            AutomationCore.model_validate(yaml.safe_load(text))
    for placeholder in placeholders:
        text = text.replace(placeholder, str(uuid.uuid4()))
    filled = yaml.safe_load(text)
    AutomationCore.model_validate(filled)  # what the CLI checks
    ServerAutomationCore.model_validate(filled)  # what the server checks: the templates too
