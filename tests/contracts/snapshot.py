"""Write the JSON-schema snapshot of every message (``make schemas``) after a deliberate change."""

from __future__ import annotations

import json
from pathlib import Path

from cpcs.messages import MESSAGE_TYPES

SNAPSHOT_DIR = Path(__file__).with_name("schemas")


def snapshot_name(routing_key: str, version: int) -> str:
    return f"{routing_key}.v{version}.json"


def current_schemas() -> dict[str, dict[str, object]]:
    schemas = {}
    for routing_key, model in MESSAGE_TYPES.items():
        version = model.model_fields["version"].default
        schemas[snapshot_name(routing_key, version)] = model.model_json_schema()
    return schemas


def render(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for name, schema in current_schemas().items():
        (SNAPSHOT_DIR / name).write_text(render(schema))
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
