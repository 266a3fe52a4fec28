"""Tidy a JSON Schema generated from a CRD's TypeScript types (see generate.sh).

- A TypeScript `{}` (the CRD's `x-kubernetes-preserve-unknown-fields` object, such as a
  KafkaTopic's `config`) comes out as an object with no properties that allows none; it is
  made a free-form object again.
- Descriptions are dropped: the schema is for validation, and the CRD documents the fields.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def tidy(node: Any) -> Any:
    """The node with descriptions removed and empty closed objects opened."""
    if isinstance(node, list):
        return [tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: tidy(value) for key, value in node.items() if key != "description"}
    if (
        out.get("type") == "object"
        and out.get("additionalProperties") is False
        and not out.get("properties")
        and not out.get("patternProperties")
    ):
        del out["additionalProperties"]
    return out


def main(source: str, target: str) -> None:
    with open(source, encoding="utf-8") as f:
        schema = tidy(json.load(f))
    with open(target, "w", encoding="utf-8") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
