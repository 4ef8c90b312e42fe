"""The JSON schema of this package's blocks: Prefect's, closed to properties they do not have.

A block chosen in a run form's picker arrives as `{"$ref": {"block_document_id": ...}}`, which
Prefect accepts where the block is expected if it matches exactly one of the block's schema
and the reference. The open schema of a block without required fields matches it too ("is
valid under each of"), and the form refuses the choice; a closed one does not.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block, schema_extra


def closed_block_schema(schema: dict[str, Any], model: type[Block]) -> None:
    """Prefect's block schema (type slug, secret fields, references), with `additionalProperties: false`."""
    schema_extra(schema, model)
    schema["additionalProperties"] = False
