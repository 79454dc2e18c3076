"""Per-item purchase statistics of one shopper, from purchase events (pure).

The shopper ranker's half of a profile (``profile["purchases"]``): what a grocery shop's
"buy again" needs beyond a decayed affinity. Built from ``purchase`` events only; an event's
``event_attributes`` may say which order it belongs to (``order_id``), where in the cart it was
added (``cart_position``, 1 = first), and whether the shopper had bought it before
(``reordered``). Without ``order_id``, the purchases of one instant are one order.

Shape (times are ISO 8601; orders are counted 1, 2, ... in time order)::

    {"orders": 3, "lines": 7, "reorders": 3, "first_at": ..., "last_at": ..., "last_order": "o-3",
     "categories": {"yogurt": 4, ...}, "words": {"organic": 5, ...},
     "items": {"sku-1": {"n": 2, "first": 1, "last": 3, "first_at": ..., "last_at": ...,
                          "cart": 3.0, "carts": 2, "dow": [0, 1, 0, 0, 0, 1, 0], "hour": 19.5,
                          "recent": [1, 3]}, ...}}

- ``n``: orders the item was in; ``first`` / ``last``: the numbers of the first and last of them;
- ``cart`` / ``carts``: sum and count of the cart positions known; ``dow``: purchases per day of the
  week (Monday 0); ``hour``: the sum of purchase hours (mean = hour / n); ``recent``: the numbers
  of the last ``RECENT`` orders it was in, oldest first (streaks and recent counts);
- ``words``: purchases per title word (``shopper_features.title_words``), the most frequent kept;
- at most ``top`` items are kept: those bought most often, the most recent first among equals.

Incremental like the rest of the profile: given ``previous`` statistics, only newer events
are added; an event of the order seen last (same ``order_id``) joins that order.
"""

from __future__ import annotations

from datetime import datetime

from shopsearch.clock import parse_time
from shopsearch.query.shopper_features import title_words

ITEMS_TOP = 500
WORDS_TOP = 300
RECENT = 8


def _order_key(event: dict) -> str:
    attributes = event.get("event_attributes") or {}
    return str(attributes.get("order_id") or event["timestamp"])


def empty_purchases() -> dict:
    """The statistics of a shopper who bought nothing yet."""
    return {"orders": 0, "lines": 0, "reorders": 0, "first_at": None, "last_at": None, "last_order": None,
            "categories": {}, "words": {}, "items": {}}


def _copy(stats: dict) -> dict:
    return {**stats, "categories": dict(stats["categories"]), "words": dict(stats.get("words") or {}),
            "items": {k: {**v, "dow": list(v["dow"]), **({"recent": list(v["recent"])} if "recent" in v else {})}
                      for k, v in stats["items"].items()}}


def _add_line(stats: dict, event: dict, item_info: dict, order: int, when: datetime) -> None:
    """One purchased item of order number ``order`` into the statistics (in place)."""
    product = event["object_id"]
    attributes = event.get("event_attributes") or {}
    item = stats["items"].get(product)
    if item is None:
        item = stats["items"][product] = {"n": 0, "first": order, "last": order, "first_at": event["timestamp"],
                                          "last_at": event["timestamp"], "cart": 0.0, "carts": 0,
                                          "dow": [0] * 7, "hour": 0.0, "recent": []}
    elif item["last"] == order:  # the same item twice in one order counts once
        return
    bought_before = item["n"] > 0
    item["n"] += 1
    item["last"], item["last_at"] = order, event["timestamp"]
    if "recent" in item:  # an item stored before ``recent`` existed gets none: its features stay NaN
        item["recent"] = (item.get("recent") or [])[-(RECENT - 1):] + [order]
    item["dow"][when.weekday()] += 1
    item["hour"] += when.hour + when.minute / 60
    position = attributes.get("cart_position")
    if isinstance(position, int) and not isinstance(position, bool) and position >= 1:
        item["cart"] += position
        item["carts"] += 1
    stats["lines"] += 1
    reordered = attributes.get("reordered")
    stats["reorders"] += int(bool(reordered) if reordered is not None else bought_before)
    category = item_info.get("category")
    if category:
        stats["categories"][category] = stats["categories"].get(category, 0) + 1
    for word in title_words(item_info.get("title")):
        stats["words"][word] = stats["words"].get(word, 0) + 1


def _kept(items: dict[str, dict], top: int) -> dict[str, dict]:
    ranked = sorted(items.items(), key=lambda kv: (-kv[1]["n"], -kv[1]["last"], kv[0]))
    return dict(ranked[:top])


def _kept_words(words: dict[str, int], top: int) -> dict[str, int]:
    return dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def build_purchases(events: list[dict], items: dict[str, dict], previous: dict | None = None,
                    since: str | None = None, top: int = ITEMS_TOP) -> dict:
    """A shopper's purchase statistics from their events (see the module docstring).

    ``items`` maps product ids to ``{"category", "title"}`` (missing: none). With ``previous``,
    events at or before ``since`` are taken as already counted.

    >>> ev = [{"action_name": "purchase", "object_id": "milk", "timestamp": "2024-05-06T09:00:00Z",
    ...        "event_attributes": {"order_id": "o1", "cart_position": 1}},
    ...       {"action_name": "purchase", "object_id": "milk", "timestamp": "2024-05-13T09:00:00Z",
    ...        "event_attributes": {"order_id": "o2", "cart_position": 3, "reordered": 1}},
    ...       {"action_name": "click", "object_id": "tea", "timestamp": "2024-05-13T09:00:00Z"}]
    >>> p = build_purchases(ev, {"milk": {"category": "dairy", "title": "Whole Milk"}})
    >>> p["orders"], p["categories"], p["items"]["milk"]["n"], p["items"]["milk"]["cart"], p["items"]["milk"]["dow"][0]
    (2, {'dairy': 2}, 2, 4.0, 2)
    """
    stats = _copy(previous) if previous else empty_purchases()
    cutoff = parse_time(since) if since else None
    purchases = [e for e in events if e.get("action_name") == "purchase" and e.get("object_id")]
    for event in sorted(purchases, key=lambda e: parse_time(e["timestamp"])):  # stable: a cart keeps its order
        when = parse_time(event["timestamp"])
        if cutoff is not None and when <= cutoff:
            continue
        key = _order_key(event)
        if key != stats["last_order"]:
            stats["orders"] += 1
            stats["last_order"] = key
            stats["first_at"] = stats["first_at"] or event["timestamp"]
        stats["last_at"] = event["timestamp"]
        _add_line(stats, event, items.get(event["object_id"]) or {}, stats["orders"], when)
    stats["items"] = _kept(stats["items"], top)
    stats["words"] = _kept_words(stats["words"], WORDS_TOP)
    return stats
