"""The documentation site's code blocks, by the marker before each (tests of the examples read them)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = r"^([ \t]*)<!-- {kind}: ?(.*?) -->\n[ \t]*```python\n(.*?)^[ \t]*```"


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def blocks(kind: str) -> dict[str, str]:
    """Every Python block after a `<!-- KIND: NAME -->` on the site, by NAME, dedented."""
    found = {}
    for page in pages():
        text = page.read_text()
        for _indent, name, code in re.findall(_BLOCK.format(kind=re.escape(kind)), text, re.DOTALL | re.MULTILINE):
            found[f"{page.relative_to(DOCS)}: {name}" if kind == "docs-fragment" else name] = textwrap.dedent(code)
    return found


def example(name: str) -> str:
    """The example NAME (`<!-- readme-example: NAME -->`), as the site shows it."""
    examples = blocks("readme-example")
    assert name in examples, f"no page under docs/ has the example {name}"
    return examples[name]
