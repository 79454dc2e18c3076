"""What the storefront shows beside search results: suggested queries and demo shoppers.

A catalogue's showcase is ``<home>/storefront/<catalogue>.json``, written by whoever prepared the
catalogue (``shopsearch demo``, the storefront tests)::

    {"queries": ["black running shoes", ...],
     "shoppers": [{"id": "demo-runner", "name": "Sam, runs", "about": "bought running shoes ..."}]}

No file: no suggested queries and no demo shoppers (the page still searches). The shoppers'
histories are ordinary events in ``ubi_events``; this file only names them for the switcher.
"""

from __future__ import annotations

import json
from pathlib import Path

from shopsearch.files import write_json_atomic
from shopsearch.settings import Settings


def showcase_path(settings: Settings, catalogue: str) -> Path:
    """Where ``catalogue``'s showcase lives."""
    return settings.home_path / "storefront" / f"{catalogue}.json"


def read_showcase(settings: Settings, catalogue: str) -> dict:
    """``{"queries": [...], "shoppers": [...]}`` of ``catalogue`` (empty lists without a file)."""
    try:
        found = json.loads(showcase_path(settings, catalogue).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = {}
    return {"queries": [str(q) for q in found.get("queries", [])],
            "shoppers": [{"id": str(s["id"]), "name": str(s.get("name") or s["id"]), "about": str(s.get("about", ""))}
                         for s in found.get("shoppers", []) if isinstance(s, dict) and s.get("id")]}


def write_showcase(settings: Settings, catalogue: str, queries: list[str], shoppers: list[dict]) -> Path:
    """Write ``catalogue``'s showcase (atomically) and return its path."""
    path = showcase_path(settings, catalogue)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"queries": list(queries), "shoppers": list(shoppers)})
    return path
