"""Recommendations without a query: the lists ``plugin/recommend.py`` answers with.

Request bodies and list shaping are pure functions; :func:`for_you`, :func:`similar` and
:func:`also_bought_hits` run them with the OpenSearch client they are given (the web layer passes
its own, and the shopper's profile and live index from its Searcher). Three lists, each answered
from the live index (and, for also-bought, the events index):

- **for you**: k-NN around the shopper's profile vector, or the catalogue's most popular items
  when there is no usable profile (cold start); both diversified so no category fills the list;
- **similar**: k-NN around one item's ``fused_vector``, the item and its duplicates excluded
  inside the k-NN filter (Lucene filtered search, so exclusion costs no places in the list);
- **also bought**: co-purchase neighbours (``profile_build.co_occurrence``) over the orders of the
  shoppers who bought the item.

>>> knn_body([0.1, 0.2], 5, 10, [{"term": {"colour": "red"}}], exclude_ids=["a"])["query"]["knn"]["fused_vector"]["filter"]
{'bool': {'filter': [{'term': {'colour': 'red'}}], 'must_not': [{'ids': {'values': ['a']}}]}}
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timezone
from typing import Any, Iterable

from opensearchpy import NotFoundError, OpenSearch, RequestError

from shopsearch.clock import parse_time
from shopsearch.errors import SearchError
from shopsearch.index.vectors import SOURCE_WITHOUT_VECTORS, read_with_vectors, without_vectors
from shopsearch.learn.profile_build import co_occurrence, diversify
from shopsearch.privacy import pseudonym
from shopsearch.settings import Settings

CANDIDATES_PER_PLACE = 5   # for-you fetches 5 x size candidates, so diversification has room
MAX_CO_BUYERS = 1000       # shoppers of the item looked at for also-bought (the most recent)
MAX_CO_PURCHASES = 10000   # their purchases read (one search page; the most recent first)
MAX_BOUGHT_EXCLUDED = 500  # for-you leaves out the shopper's most recent purchases, this many at most
NO_VECTORS = SOURCE_WITHOUT_VECTORS


def exclusion_filter(filters: list[dict], exclude_ids: Iterable[str] = (),
                     duplicate_group: str | None = None) -> dict | None:
    """One ``bool`` clause: the shopper's filters, minus the excluded ids and duplicate group.

    >>> exclusion_filter([], duplicate_group="g")
    {'bool': {'must_not': [{'term': {'duplicate_group': 'g'}}]}}
    >>> exclusion_filter([]) is None
    True
    """
    must_not: list[dict] = []
    ids = list(dict.fromkeys(exclude_ids))
    if ids:
        must_not.append({"ids": {"values": ids}})
    if duplicate_group:
        must_not.append({"term": {"duplicate_group": duplicate_group}})
    clause: dict = {}
    if filters:
        clause["filter"] = list(filters)
    if must_not:
        clause["must_not"] = must_not
    return {"bool": clause} if clause else None


def knn_body(vector: list[float], size: int, k: int, filters: list[dict], exclude_ids: Iterable[str] = (),
             duplicate_group: str | None = None, field: str = "fused_vector") -> dict:
    """k-NN on ``field`` with filters and exclusions inside the k-NN clause (efficient filtering)."""
    knn: dict = {"vector": vector, "k": k}
    where = exclusion_filter(filters, exclude_ids, duplicate_group)
    if where is not None:
        knn["filter"] = where
    return {"size": size, "_source": NO_VECTORS, "query": {"knn": {field: knn}}}


def popular_body(size: int, filters: list[dict], exclude_ids: Iterable[str] = ()) -> dict:
    """The catalogue's most popular items: ``popularity_norm`` descending, then score, then id.

    Items without a popularity sort last; the id keeps the order stable between requests.
    """
    where = exclusion_filter(filters, exclude_ids) or {"match_all": {}}
    return {"size": size, "_source": NO_VECTORS, "track_scores": True, "query": where,
            "sort": [{"popularity_norm": {"order": "desc", "missing": "_last"}}, "_score", {"id": "asc"}]}


def ids_body(ids: list[str], filters: list[dict]) -> dict:
    """The sources of ``ids`` that pass the shopper's filters (order is restored by the caller)."""
    return {"size": len(ids), "_source": NO_VECTORS,
            "query": {"bool": {"filter": [{"ids": {"values": ids}}, *filters]}}}


def max_per_category(size: int) -> int:
    """How many places one category may take in a list of ``size``: a third, and at least 2.

    >>> max_per_category(10), max_per_category(3)
    (3, 2)
    """
    return max(2, size // 3)


def diversified(hits: list[dict], size: int) -> list[dict]:
    """``size`` hits in rank order, no category above :func:`max_per_category` unless the list
    would otherwise be short (``diversify``'s second pass fills it with the skipped items)."""
    by_id = {h["_id"]: h for h in hits}
    order = diversify([(h["_id"], (h.get("_source") or {}).get("category")) for h in hits],
                      max_per_category(size), k=size)
    return [by_id[d] for d in order]


def shown(hit: dict, score: float | None = None) -> dict:
    """A hit as a shopper sees it: id, score, then its source fields without vectors.

    >>> shown({"_id": "a", "_score": 0.5, "_source": {"title": "Watch", "fused_vector": [1.0]}})
    {'id': 'a', 'score': 0.5, 'title': 'Watch'}
    """
    value = hit.get("_score") if score is None else score
    source = without_vectors(hit.get("_source") or {})
    return {"id": hit["_id"], "score": round(float(value or 0.0), 6), **source}


def utc_day(timestamp: str) -> str:
    """The UTC calendar day of a stored event timestamp.

    >>> utc_day("2024-05-01T23:30:00-02:00"), utc_day("2024-05-01T12:00:00.000Z")
    ('2024-05-02', '2024-05-01')
    """
    return parse_time(timestamp).astimezone(timezone.utc).date().isoformat()


def orders_from_purchases(purchases: list[dict]) -> list[list[str]]:
    """Purchase events grouped into orders: one per (shopper, UTC day of the event).

    UBI events carry no order id, so a shopper's purchases on one day stand for one basket: a
    checkout of several items lands on one day, while purchases weeks apart are not "bought
    together". Events without a shopper, item or timestamp are ignored.

    >>> orders_from_purchases([
    ...     {"user_id": "u", "object_id": "a", "timestamp": "2024-05-01T09:00:00Z"},
    ...     {"user_id": "u", "object_id": "b", "timestamp": "2024-05-01T18:00:00Z"},
    ...     {"user_id": "u", "object_id": "c", "timestamp": "2024-06-01T09:00:00Z"}])
    [['a', 'b'], ['c']]
    """
    orders: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in purchases:
        user, item, when = event.get("user_id"), event.get("object_id"), event.get("timestamp")
        if user and item and when:
            orders[(user, utc_day(str(when)))].append(str(item))
    return [items for _, items in sorted(orders.items())]


def also_bought(item_id: str, purchases: list[dict]) -> list[tuple[str, float]]:
    """The co-purchase neighbours of ``item_id``, best first, never the item itself.

    ``purchases`` are the purchases of the shoppers who bought the item; scores are
    ``co_occurrence``'s cosine over their orders, so an item those shoppers buy in every order
    scores lower than one they buy only with ``item_id``.

    >>> also_bought("a", [{"user_id": "u", "object_id": o, "timestamp": "2024-05-01T09:00:00Z"} for o in "ab"])
    [('b', 1.0)]
    """
    return [(d, s) for d, s in co_occurrence(orders_from_purchases(purchases)).get(item_id, []) if d != item_id]


# --- the queries -------------------------------------------------------------------------------

def search_hits(client: OpenSearch, index: str, body: dict) -> list[dict]:
    """The hits of one search; a query OpenSearch rejects is a 502 :class:`SearchError`."""
    try:
        return client.search(index=index, body=body)["hits"]["hits"]
    except RequestError as e:
        raise SearchError(f"OpenSearch rejected the recommendation query: {e.error}", 502, "upstream_error") from None


def search_events(client: OpenSearch, settings: Settings, body: dict) -> dict | None:
    """A search on the events index; None when the index does not exist (no events yet)."""
    try:
        return client.search(index=settings.ubi_events_index, body=body)
    except NotFoundError:
        return None


def item_source(client: OpenSearch, index: str, catalogue: str, item_id: str, fields: list[str]) -> dict:
    """The ``fields`` of one item, vectors included by name (``index/vectors.py``); an item the catalogue
    does not have is a 404 naming ``item_id``."""
    found = read_with_vectors(client, index, [item_id], fields)
    if item_id not in found:
        raise SearchError(f"item {item_id!r} is not in catalogue {catalogue!r}", 404, "not_found", field="item_id")
    return found[item_id]


def bought_by(client: OpenSearch, settings: Settings, catalogue: str, user: str) -> list[str]:
    """Items the shopper has bought in this catalogue, most recent first (events carry the pseudonym)."""
    who = pseudonym(user, settings.pseudonym_salt)
    found = search_events(client, settings, {"size": 0, "query": {"bool": {"filter": [
        {"term": {"user_id": who}}, {"term": {"action_name": "purchase"}}, {"term": {"catalogue": catalogue}}]}},
        "aggs": {"items": {"terms": {"field": "object_id", "size": MAX_BOUGHT_EXCLUDED,
                                     "order": {"last": "desc"}}, "aggs": {"last": {"max": {"field": "timestamp"}}}}}})
    return [b["key"] for b in found["aggregations"]["items"]["buckets"]] if found else []


def co_purchases(client: OpenSearch, settings: Settings, catalogue: str, item_id: str) -> list[tuple[str, float]]:
    """The also-bought neighbours of one item, from the purchases of the shoppers who bought it."""
    where = [{"term": {"action_name": "purchase"}}, {"term": {"catalogue": catalogue}}]
    found = search_events(client, settings, {
        "size": 0, "query": {"bool": {"filter": [*where, {"term": {"object_id": item_id}}]}},
        "aggs": {"buyers": {"terms": {"field": "user_id", "size": MAX_CO_BUYERS}}}})
    buyers = [b["key"] for b in found["aggregations"]["buyers"]["buckets"]] if found else []
    if not buyers:
        return []
    found = search_events(client, settings, {
        "size": MAX_CO_PURCHASES, "_source": ["user_id", "object_id", "timestamp"], "sort": [{"timestamp": "desc"}],
        "query": {"bool": {"filter": [*where, {"terms": {"user_id": buyers}}]}}})
    return also_bought(item_id, [h["_source"] for h in found["hits"]["hits"]] if found else [])


def unusable_profile(profile: dict | None, live_model: str | None) -> str | None:
    """Why a profile cannot seed k-NN, or None when it can.

    >>> unusable_profile({"vector": [0.1], "model_version": "a"}, "b")
    "the shopper's profile was built with another model"
    >>> unusable_profile({"vector": [0.1]}, "b") is None
    True
    """
    if not profile:
        return "no profile for this shopper yet"
    if not profile.get("vector"):
        return "the shopper's profile has no vector"
    if profile.get("model_version") and profile["model_version"] != live_model:
        return "the shopper's profile was built with another model"  # vectors of two models are not comparable
    return None


def for_you(client: OpenSearch, settings: Settings, index: str, live_model: str | None, catalogue: str, user: str,
            profile: dict | None, size: int, filters: list[dict]) -> dict[str, Any]:
    """Profile k-NN, or the popular items on a cold start; diversified, the shopper's purchases left out."""
    exclude = bought_by(client, settings, catalogue, user)
    reason = unusable_profile(profile, live_model)
    depth = CANDIDATES_PER_PLACE * size
    if reason is None:
        body, strategy = knn_body(profile["vector"], depth, depth, filters, exclude_ids=exclude), "profile-knn"
    else:
        body, strategy = popular_body(depth, filters, exclude_ids=exclude), "popular"
    hits = diversified(search_hits(client, index, body), size)
    if strategy == "popular":  # sorted, not scored: the popularity is the score
        hits = [{**h, "_score": (h.get("_source") or {}).get("popularity_norm") or 0.0} for h in hits]
    out = {"catalogue": catalogue, "user": user, "strategy": strategy, "hits": [shown(h) for h in hits]}
    if reason:
        out["reason"] = reason
    return out


def similar(client: OpenSearch, index: str, catalogue: str, item_id: str, size: int,
            filters: list[dict]) -> dict[str, Any]:
    """k-NN around the item's vector, the item and its duplicate group excluded."""
    item = item_source(client, index, catalogue, item_id, ["fused_vector", "duplicate_group"])
    out: dict[str, Any] = {"catalogue": catalogue, "item": item_id, "strategy": "item-knn", "hits": []}
    if not item.get("fused_vector"):
        return {**out, "reason": f"item {item_id!r} has no vector to compare with"}
    body = knn_body(item["fused_vector"], size, CANDIDATES_PER_PLACE * size, filters,
                    exclude_ids=[item_id], duplicate_group=item.get("duplicate_group"))
    out["hits"] = [shown(h) for h in search_hits(client, index, body)[:size]]
    return out


def also_bought_hits(client: OpenSearch, index: str, neighbours: list[tuple[str, float]], size: int,
                     filters: list[dict]) -> list[dict]:
    """The neighbours that pass the shopper's filters, in neighbour order, with their co-purchase scores."""
    if not neighbours:
        return []
    scores = dict(neighbours)
    found = {h["_id"]: h for h in search_hits(client, index, ids_body(list(scores), filters))}
    return [shown(found[d], score) for d, score in neighbours if d in found][:size]
