"""Popularity from click logs: action-weighted event counts per product, scaled into ``popularity_norm``.

Counts weigh purchases 5, add-to-carts 3, clicks 1 (``events.ACTION_WEIGHTS``) and are scaled
with the log min-max of ``workers.normalise`` fitted on the catalogue's current counts; the
fitted scale is stored in the index ``_meta`` (``scales.popularity_events``). The unpersonalised
ranking adds ``popularity_weight * popularity_norm`` after fusion. The two fields are written by
rewriting each counted product whole, with its vectors (``index/vectors.py``: the update API
would drop them); a product whose count did not change is not written.
"""

from __future__ import annotations

from opensearchpy import OpenSearch, helpers

from shopsearch.index.catalogue import live_meta
from shopsearch.index.meta import update_meta
from shopsearch.index.vectors import update_keeping_vectors
from shopsearch.ingest.normalise import apply_scale, fit_popularity_scale
from shopsearch.learn.profile_build import popularity_counts
from shopsearch.settings import Settings


def update_popularity(client: OpenSearch, settings: Settings, catalogue: str) -> dict:
    """Recount every product's interactions in ``catalogue`` and write ``popularity`` and ``popularity_norm``."""
    index, _ = live_meta(client, catalogue)
    if not client.indices.exists(index=settings.ubi_events_index):
        return {"catalogue": catalogue, "events": 0, "products_updated": 0}
    client.indices.refresh(index=settings.ubi_events_index)
    query = {"query": {"bool": {"filter": [{"term": {"catalogue": catalogue}},
                                           {"terms": {"action_name": ["click", "add_to_cart", "purchase"]}}]}}}
    events = [h["_source"] for h in helpers.scan(client, index=settings.ubi_events_index, query=query,
                                                 _source_includes=["action_name", "object_id"])]
    counts = popularity_counts(events)
    scale = fit_popularity_scale(counts.values())
    # whole documents, with their vectors: the update API would rebuild them from a _source without them
    changes = {pid: {"popularity": n, "popularity_norm": apply_scale(n, scale)} for pid, n in counts.items()}
    updated = update_keeping_vectors(client, index, changes, refresh=True)

    def set_scale(meta: dict) -> None:  # on the _meta as it is now: a rollout may have recorded its state since
        meta.setdefault("scales", {})["popularity_events"] = scale
    update_meta(client, index, set_scale)
    return {"catalogue": catalogue, "events": len(events), "products_updated": updated}
