"""Shopper profiles from click logs (runs as the ``shopsearch.profiles.update`` task).

Incremental: only shoppers with events after ``since`` are touched, and each profile is updated
from its previous statistics plus the events newer than it (``profile_build.build_profile``).
Item features (fused vector, category, brand, price band, title) come from the catalogue's live
index, so a profile vector lives in the same space as the documents it is compared with. Beside
the decayed statistics, each profile keeps the shopper's per-item purchase statistics
(``purchases``, ``profile_purchases.build_purchases``), which the learned shopper ranker reads.
"""

from __future__ import annotations

from datetime import datetime, timezone

from opensearchpy import OpenSearch

from shopsearch.clock import parse_time
from shopsearch.errors import IndexVersionError
from shopsearch.index.catalogue import live_meta
from shopsearch.index.profiles import get_profile, put_profile
from shopsearch.index.ubi import stored_mark, stored_since, user_events
from shopsearch.index.vectors import read_with_vectors
from shopsearch.index.versions import live_index
from shopsearch.learn.events import ACTION_WEIGHTS
from shopsearch.learn.profile_build import build_profile, decay_weight
from shopsearch.learn.profile_purchases import build_purchases
from shopsearch.settings import Settings

ITEMS_KEPT = 500
# Every item a shopper bought or clicked keeps at least this affinity, so an old purchase still
# outranks a stranger's favourite (buy again); above it, affinities keep their decayed order.
ITEM_FLOOR = 0.3


def users_with_events(client: OpenSearch, settings: Settings, catalogue: str, since: str | None) -> list[str]:
    """Pseudonyms of shoppers with events in ``catalogue`` stored after ``since``."""
    filters = [{"term": {"catalogue": catalogue}}]
    if since:
        filters.append(stored_since(since))
    users, after = [], None
    while True:
        comp = {"size": 500, "sources": [{"u": {"terms": {"field": "user_id"}}}]}
        if after:
            comp["after"] = after
        res = client.search(index=settings.ubi_events_index, body={"size": 0, "query": {"bool": {"filter": filters}},
                                                                  "aggs": {"users": {"composite": comp}}})
        buckets = res["aggregations"]["users"]["buckets"]
        users += [b["key"]["u"] for b in buckets]
        after = res["aggregations"]["users"].get("after_key")
        if not buckets or not after:
            return users


def recent_catalogues(client: OpenSearch, settings: Settings, since: str) -> list[str]:
    """Catalogues with events stored after ``since`` (that still have a live index)."""
    if not client.indices.exists(index=settings.ubi_events_index):
        return []
    client.indices.refresh(index=settings.ubi_events_index)
    res = client.search(index=settings.ubi_events_index, body={
        "size": 0, "query": stored_since(since),
        "aggs": {"c": {"terms": {"field": "catalogue", "size": 1000}}}})
    return [b["key"] for b in res["aggregations"]["c"]["buckets"] if _live(client, b["key"])]


def _live(client: OpenSearch, catalogue: str) -> bool:
    """Whether a catalogue named in stored events has a live index; a name that is no catalogue's
    (an event written straight to the index, or before ``POST /events`` checked it) has none."""
    try:
        return live_index(client, catalogue) is not None
    except IndexVersionError:
        return False


def item_features(client: OpenSearch, index: str, ids: list[str]) -> dict[str, dict]:
    """What a profile takes from each item of ``index``: fused vector, category, brand, ``price_norm``, title."""
    if not ids:
        return {}
    docs = read_with_vectors(client, index, sorted(set(ids)), ["fused_vector", "category", "brand", "price_norm", "title"])
    return {i: {"vector": d.get("fused_vector"), "category": d.get("category"), "brand": d.get("brand"),
                "price_norm": d.get("price_norm"), "title": d.get("title")}
            for i, d in docs.items()}


def item_affinities(previous: dict | None, events: list[dict], now: datetime, half_life: float) -> dict[str, float]:
    """Decayed, action-weighted interaction per product, scaled to [0, 1] (pure; the "buy again" signal)."""
    weights: dict[str, float] = {}
    if previous and previous.get("stats", {}).get("items"):
        then = parse_time(previous["updated_at"])
        factor = decay_weight((now - then).total_seconds() / 86400, half_life)
        weights = {k: v * factor for k, v in previous["stats"]["items"].items()}
    for e in events:
        w = ACTION_WEIGHTS.get(e["action_name"])
        if w and e.get("object_id"):
            age = (now - parse_time(e["timestamp"])).total_seconds() / 86400
            weights[e["object_id"]] = weights.get(e["object_id"], 0.0) + w * decay_weight(max(age, 0.0), half_life)
    return dict(sorted(weights.items(), key=lambda kv: -kv[1])[:ITEMS_KEPT])


def update_profiles(client: OpenSearch, settings: Settings, catalogue: str, users: list[str] | None = None,
                    since: str | None = None, now: datetime | None = None) -> dict:
    """Update the profiles of ``users`` (pseudonyms), or of every shopper with events since ``since``."""
    now = now or datetime.now(timezone.utc)
    client.indices.refresh(index=settings.ubi_events_index)  # events flushed a moment ago count too
    index, mapping = live_meta(client, catalogue)
    model_version = mapping.get("_meta", {}).get("model_version")
    users = users if users is not None else users_with_events(client, settings, catalogue, since)
    updated = 0
    for who in users:
        previous = get_profile(client, settings, catalogue, who)
        if previous and (previous.get("model_version") != model_version or "purchases" not in previous
                         or "stored_until" not in previous):
            previous = None  # vectors of another model, or no purchase statistics or cursor yet: rebuild from all events
        # the events OpenSearch stored after the last build, whatever their own timestamp (a late one too)
        events = user_events(client, settings, who, catalogue, stored_after=previous["stored_until"] if previous else None)
        if not events:
            continue
        items = item_features(client, index, [e["object_id"] for e in events if e.get("object_id")])
        profile = build_profile(events, items, now, settings.profile_half_life_days, previous, new_only=False)
        affinities = item_affinities(previous, events, now, settings.profile_half_life_days)
        top = max(affinities.values(), default=0.0) or 1.0
        profile["stats"]["items"] = affinities
        profile["items"] = {k: round(ITEM_FLOOR + (1 - ITEM_FLOOR) * v / top, 6) for k, v in affinities.items()}
        profile["purchases"] = build_purchases(events, items, (previous or {}).get("purchases"))
        profile["model_version"] = model_version
        # the cursor: the last event taken in, by the mark the next build's query reads (stored_since)
        marks = [m for m in map(stored_mark, events) if m]
        profile["stored_until"] = max(marks, key=parse_time) if marks else (previous or {}).get("stored_until") or now.isoformat()
        put_profile(client, settings, catalogue, who, profile, pseudonymous=True)
        updated += 1
    client.indices.refresh(index=settings.profiles_index) if updated else None
    return {"catalogue": catalogue, "users_seen": len(users), "profiles_updated": updated}
