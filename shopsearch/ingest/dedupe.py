"""Dedupe stage of ingest: settle duplicates across one run (after clean, before normalise).

A repeated id is a new version of the same product: the later record wins. Different ids with
identical or near-identical content (Home Depot lists 1,192 colour variants under one title) are
all kept, and given a shared ``duplicate_group`` that search and recommendations can collapse on.
Pure functions on clean items.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any, Iterable

from shopsearch.ingest.clean import normalise_text

def _fold_for_matching(text: Any) -> str:
    text = normalise_text(text).casefold()
    return " ".join("".join(" " if unicodedata.category(c).startswith("P") else c for c in text).split())


def near_duplicate_key(item: dict) -> str:
    """A key shared by items whose title and brand are near-identical.

    Near-identical means equal after NFKC folding, case folding, replacing punctuation with
    spaces and folding whitespace: "Acme Water-Bottle, 1L" and "acme water bottle 1l" match;
    "Water Bottle 1L" and "Water Bottle 2L" do not, nor do equal titles of different brands.

    >>> near_duplicate_key({"title": "A-B", "brand": "X"}) == near_duplicate_key({"title": "a b", "brand": "x"})
    True
    """
    basis = _fold_for_matching(item.get("brand")) + "\x1f" + _fold_for_matching(item.get("title"))
    return "nd-" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


# --- the stage -----------------------------------------------------------------------------


def dedupe(items: Iterable[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Settle duplicates across one ingest run; returns ``(kept, superseded, groups)``.

    A repeated id: the later record wins and takes the later position; each earlier one is
    reported as ``{"id", "reason": "duplicate_id_superseded", "detail", "record"}``. Different
    ids with the same :func:`near_duplicate_key` are all kept, each copy given
    ``duplicate_group`` (only for groups of two or more), and each group is summarised as
    ``{"key", "ids", "titles"}``. Input items are not modified.
    """
    by_id: dict[str, dict] = {}
    superseded = []
    for item in items:
        earlier = by_id.pop(item["id"], None)
        if earlier is not None:
            superseded.append({"id": item["id"], "reason": "duplicate_id_superseded",
                               "detail": "a later record has the same id", "record": earlier})
        by_id[item["id"]] = item
    members: dict[str, list[str]] = {}
    for item in by_id.values():
        members.setdefault(near_duplicate_key(item), []).append(item["id"])
    kept, groups = [], []
    for item in by_id.values():
        key = near_duplicate_key(item)
        kept.append({**item, "duplicate_group": key} if len(members[key]) > 1 else item)
    for key, ids in members.items():
        if len(ids) > 1:
            groups.append({"key": key, "ids": ids, "titles": [by_id[i]["title"] for i in ids]})
    return kept, superseded, groups
