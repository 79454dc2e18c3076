"""Build shopper profiles, popularity counts and also-bought lists from events (pure).

A profile summarises one (pseudonymous) shopper's interactions, each weighted by its action
(``events.ACTION_WEIGHTS``: purchase > add-to-cart > click) times an exponential time decay
(``0.5 ** (age_days / half_life_days)``), so last month's purchase outweighs last year's:

- ``vector``: weighted mean of the interacted items' vectors, L2-normalised (None if none);
- ``categories`` / ``brands``: weighted counts divided by the largest, so in [0, 1], max 1;
- ``price_band``: weighted 10th and 90th percentiles of the items' ``price_norm``;
- ``events``, ``weight``, ``updated_at``, and ``stats``: the sufficient statistics that let
  the next build add only new events (see :func:`build_profile`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from itertools import combinations

from shopsearch.clock import parse_time
from shopsearch.learn.events import ACTION_WEIGHTS

PRICE_SAMPLES = 200  # the price band looks at the most recent weighted samples only
PRICE_QUANTILES = (0.1, 0.9)
ALSO_BOUGHT_TOP = 50


def decay_weight(age_days: float, half_life_days: float) -> float:
    """How much an interaction ``age_days`` old still counts: halves every half-life.

    >>> decay_weight(0, 30), decay_weight(30, 30), decay_weight(60, 30)
    (1.0, 0.5, 0.25)
    """
    return 0.5 ** (age_days / half_life_days)


def _days(delta) -> float:
    return delta.total_seconds() / 86400.0


def _empty_stats(half_life_days: float) -> dict:
    return {"half_life_days": half_life_days, "vector_sum": None, "categories": {}, "brands": {}, "prices": []}


def _decayed(stats: dict, factor: float) -> dict:
    return {
        "half_life_days": stats["half_life_days"],
        "vector_sum": [x * factor for x in stats["vector_sum"]] if stats.get("vector_sum") else None,
        "categories": {k: w * factor for k, w in stats["categories"].items()},
        "brands": {k: w * factor for k, w in stats["brands"].items()},
        "prices": [[p, w * factor] for p, w in stats["prices"]],
    }


def _weighted_quantile(samples: list[list[float]], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total."""
    ordered = sorted(samples)
    total = sum(w for _, w in ordered)
    cumulative = 0.0
    for value, w in ordered:
        cumulative += w
        # Tolerance: an incremental build sums the same weights in another order.
        if cumulative >= q * total * (1 - 1e-9):
            return value
    return ordered[-1][0]


def _normalised_affinities(weights: dict[str, float]) -> dict[str, float]:
    top = max(weights.values(), default=0.0)
    return {k: w / top for k, w in sorted(weights.items())} if top > 0 else {}


def _starting_point(previous: dict | None, now: datetime, half_life_days: float):
    """``(stats, weight, events, since)``: empty, or ``previous`` decayed to ``now``."""
    if not previous:
        return _empty_stats(half_life_days), 0.0, 0, None
    since = parse_time(previous["updated_at"])
    if now < since:
        raise ValueError(f"now ({now.isoformat()}) is before the previous profile's updated_at")
    stats = previous["stats"]
    if stats["half_life_days"] != half_life_days:
        raise ValueError("half_life_days differs from the previous profile's; rebuild in full")
    factor = decay_weight(_days(now - since), half_life_days)
    return _decayed(stats, factor), previous["weight"] * factor, previous["events"], since


def _add_item(stats: dict, new_prices: list, object_id: str, item: dict, w: float) -> None:
    """Add one interacted item, weighted ``w``, to the statistics (in place)."""
    vector = item.get("vector")
    if vector:
        if stats["vector_sum"] is None:
            stats["vector_sum"] = [0.0] * len(vector)
        if len(vector) != len(stats["vector_sum"]):
            raise ValueError(f"item {object_id!r} has a {len(vector)}-d vector, "
                             f"expected {len(stats['vector_sum'])}")
        stats["vector_sum"] = [s + w * x for s, x in zip(stats["vector_sum"], vector)]
    for key in ("category", "brand"):
        if item.get(key) is not None:
            bucket = stats["categories" if key == "category" else "brands"]
            bucket[item[key]] = bucket.get(item[key], 0.0) + w
    if item.get("price_norm") is not None:
        new_prices.append([float(item["price_norm"]), w])


def build_profile(events: list[dict], items: dict[str, dict], now: datetime,
                  half_life_days: float = 30.0, previous: dict | None = None, new_only: bool = True) -> dict:
    """The profile of one shopper from their validated events (see ``events.validate_event``).

    ``items`` maps object_id to ``{"vector", "category", "brand", "price_norm"}`` (each may be
    None). Impressions, events after ``now`` and events on items missing from ``items`` add no
    features; only the latter still count in ``events`` and ``weight`` (the shopper did act).

    Incremental: given ``previous`` (a profile this function built), its statistics are decayed
    by the time since ``previous["updated_at"]`` and only events newer than that are added;
    older events are ignored because they are already counted (a late-arriving old event is
    picked up by the next full rebuild). ``new_only=False``: ``events`` are the ones not counted yet
    whatever their ``timestamp`` (``profile_update`` selects them by when they were stored), each
    weighted by its own age. Because decay is exponential, building at t1 then
    at t2 equals building once at t2 on all events, up to float error.

    >>> now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> ev = [{"action_name": "purchase", "object_id": "a", "timestamp": "2024-05-01T00:00:00Z"}]
    >>> p = build_profile(ev, {"a": {"vector": [3.0, 4.0], "category": "shoes"}}, now)
    >>> p["vector"], p["categories"], p["weight"]
    ([0.6, 0.8], {'shoes': 1.0}, 5.0)
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    now = parse_time(now)
    stats, total, count, since = _starting_point(previous, now, half_life_days)
    since = since if new_only else None
    new_prices = []
    for event in sorted(events, key=lambda e: parse_time(e["timestamp"])):  # stable: ties keep input order
        action_weight = ACTION_WEIGHTS.get(event["action_name"])
        when = parse_time(event["timestamp"])
        if action_weight is None or when > now or (since is not None and when <= since):
            continue
        w = action_weight * decay_weight(_days(now - when), half_life_days)
        count, total = count + 1, total + w
        item = items.get(event.get("object_id"))
        if item is not None:
            _add_item(stats, new_prices, event["object_id"], item, w)
    stats["prices"] = (stats["prices"] + new_prices)[-PRICE_SAMPLES:]
    vector = None
    if stats["vector_sum"] is not None:
        norm = math.sqrt(sum(x * x for x in stats["vector_sum"]))
        vector = [x / norm for x in stats["vector_sum"]] if norm > 0 else None
    return {
        "vector": vector,
        "categories": _normalised_affinities(stats["categories"]),
        "brands": _normalised_affinities(stats["brands"]),
        "price_band": ([_weighted_quantile(stats["prices"], q) for q in PRICE_QUANTILES]
                       if stats["prices"] else None),
        "events": count,
        "weight": total,
        "updated_at": now.isoformat(),
        "stats": stats,
    }


def popularity_counts(events: list[dict]) -> dict[str, float]:
    """Action-weighted interaction counts per item, without decay (impressions ignored).

    The raw counts feed the ingest normaliser (``workers.normalise``'s log min-max) as the
    ``popularity`` feature.

    >>> popularity_counts([{"action_name": "click", "object_id": "a"},
    ...                    {"action_name": "purchase", "object_id": "a"},
    ...                    {"action_name": "impression", "object_id": "b"}])
    {'a': 6.0}
    """
    counts: dict[str, float] = defaultdict(float)
    for event in events:
        w = ACTION_WEIGHTS.get(event["action_name"])
        if w is not None and event.get("object_id") is not None:
            counts[event["object_id"]] += w
    return dict(counts)


def co_occurrence(orders: list[list[str]], top: int = ALSO_BOUGHT_TOP) -> dict[str, list[tuple[str, float]]]:
    """Also-bought lists: items bought together (same order or session), best first.

    score(a, b) = orders with both / sqrt(orders with a * orders with b), a cosine that keeps
    best-sellers from topping every list. Repeats within an order count once; an item is never
    its own neighbour; ties sort by id; at most ``top`` per item.

    >>> co_occurrence([["a", "b"], ["a", "c"]])["a"]
    [('b', 0.7071067811865475), ('c', 0.7071067811865475)]
    """
    baskets = [sorted(set(order)) for order in orders]
    freq = Counter(item for basket in baskets for item in basket)
    pairs = Counter(pair for basket in baskets for pair in combinations(basket, 2))
    neighbours: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), n in pairs.items():
        score = n / math.sqrt(freq[a] * freq[b])
        neighbours[a].append((b, score))
        neighbours[b].append((a, score))
    return {item: sorted(found, key=lambda x: (-x[1], x[0]))[:top] for item, found in sorted(neighbours.items())}


def diversify(ranked: list[tuple[str, str | None]], max_per_category: int, k: int | None = None) -> list[str]:
    """Ids in rank order with no category taking more than ``max_per_category`` places.

    First pass: walk the ranking, skipping an item whose category is full (items without a
    category are never capped), and stop at ``k``. Second pass, only when ``k`` is given and
    the first pass fell short: fill the remaining places with the skipped items in rank order
    (a short list is worse than a repetitive one). With ``k=None`` the cap is strict. Repeated
    ids keep their first place.

    >>> r = [("a", "shoes"), ("b", "shoes"), ("c", "shoes"), ("d", "bags")]
    >>> diversify(r, 2), diversify(r, 1, k=3)
    (['a', 'b', 'd'], ['a', 'd', 'b'])
    """
    if max_per_category < 1:
        raise ValueError(f"max_per_category must be >= 1, got {max_per_category}")
    limit = len(ranked) if k is None else k
    taken: list[str] = []
    skipped: list[str] = []
    seen: set[str] = set()
    per_category: Counter = Counter()
    for item_id, category in ranked:
        if item_id in seen:
            continue
        seen.add(item_id)
        if len(taken) >= limit:
            break
        if category is not None and per_category[category] >= max_per_category:
            skipped.append(item_id)
            continue
        per_category[category] += 1
        taken.append(item_id)
    if k is not None:
        taken += skipped[: max(0, k - len(taken))]
    return taken
