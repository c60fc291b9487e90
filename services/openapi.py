"""Writes each service's OpenAPI document to ``docs/openapi/<service>.json`` (``python -m services.openapi``).

Generated from the FastAPI apps themselves, so the published API cannot drift from the code; a test
fails when a document is stale.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi"
SERVICES = ("enrollment", "matching", "sessions", "feedback", "metrics")


def documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.app")
        except ModuleNotFoundError:
            continue
        settings = module.settings_class()(database_url="postgresql://docs@localhost/docs")
        docs[name] = module.create(settings).openapi()
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, doc in documents().items():
        (OUT / f"{name}.json").write_text(render(doc))
        print(f"wrote docs/openapi/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
