"""User × item features of one search candidate for the shopper ranker (pure).

Inputs: the shopper's purchase statistics (``profile["purchases"]``, built by
``shopsearch/learn/profile_purchases.py``), one candidate (its id, category, ``popularity_norm``
and text score in this search) and the time of the search. Features of an item the shopper
never bought are NaN (LightGBM's missing value), not 0: "never" is not "bought 0 orders ago".

>>> purchases = {"orders": 4, "lines": 8, "reorders": 3, "last_at": "2024-05-20T09:00:00Z",
...              "categories": {"dairy": 4},
...              "items": {"milk": {"n": 3, "first": 1, "last": 4, "first_at": "2024-05-01T09:00:00Z",
...                                 "last_at": "2024-05-20T09:00:00Z", "cart": 3.0, "carts": 3,
...                                 "dow": [3, 0, 0, 0, 0, 0, 0], "hour": 27.0}}}
>>> now = datetime(2024, 5, 27, 9, tzinfo=timezone.utc)
>>> f = dict(zip(FEATURES, candidate_features(purchases, {"id": "milk", "category": "dairy"}, now)))
>>> f["times_bought"], f["orders_since_last"], f["order_rate"], f["days_since_last"], f["category_share"]
(3.0, 0.0, 0.75, 7.0, 0.5)
>>> math.isnan(candidate_features(purchases, {"id": "tea"}, now)[0])
True
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

from shopsearch.clock import parse_time

NAN = float("nan")
DECAY = 0.7  # per order, for decayed_orders: a purchase two orders back counts about half
WORD = re.compile(r"[^\W\d_]{3,}")


def title_words(title: str | None) -> set[str]:
    """The words of a title that say something about taste: letters only, three or more, lower case.

    >>> sorted(title_words("Organic 2% Reduced Fat Milk"))
    ['fat', 'milk', 'organic', 'reduced']
    """
    return set(WORD.findall((title or "").lower()))

FEATURES = (
    "times_bought",            # orders the item was in
    "orders_since_last",       # 0: bought in the shopper's latest order
    "order_rate",              # times bought / orders since the first time
    "mean_interval_orders",    # orders between purchases (NaN if bought once)
    "orders_due",              # orders since last / mean interval (1: due now)
    "days_since_last",
    "mean_interval_days",
    "days_due",                # days since last / mean interval in days
    "share_of_orders",         # times bought / all the shopper's orders
    "mean_cart_position",
    "cart_position_share",     # mean cart position / mean basket size (early = staple)
    "usual_hour_gap",          # hours between the search's hour and the item's mean purchase hour
    "bought_on_this_weekday",  # share of the item's purchases on the search's weekday
    "category_share",          # the shopper's purchases in the candidate's category / all purchases
    "share_in_category",       # times bought / the shopper's purchases in the candidate's category
    "bought_last_5",           # share of the shopper's last 5 orders the item was in
    "last_run",                # consecutive orders (of the shopper's) ending at the item's last purchase
    "decayed_orders",          # sum over the item's recent purchases of DECAY ** orders since each
    "title_word_max",          # the largest share of the shopper's purchases sharing a title word with it
    "title_word_mean",         # the mean of those shares over the candidate's title words
    "user_orders",
    "user_reorder_ratio",
    "user_basket_size",
    "days_since_last_order",   # the gap before this search (the order being filled)
    "popularity",              # the candidate's popularity_norm
    "text_score",              # the candidate's fused text score in this search (0 when absent)
)


def _days(later: datetime, earlier: str) -> float:
    return (later - parse_time(earlier)).total_seconds() / 86400.0


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else NAN


def _item_features(item: dict | None, orders: int, lines: int, now: datetime) -> list[float]:
    """The features of the shopper's history with this one item (all NaN if never bought)."""
    if not item:
        return [NAN] * 13
    n = float(item["n"])
    since_orders = float(orders - item["last"])
    interval_orders = (item["last"] - item["first"]) / (n - 1) if n > 1 else NAN
    since_days = _days(now, item["last_at"])
    interval_days = _days(parse_time(item["last_at"]), item["first_at"]) / (n - 1) if n > 1 else NAN
    cart = item["cart"] / item["carts"] if item.get("carts") else NAN
    basket = lines / orders if orders else NAN
    hour = (item["hour"] / n) if n else NAN
    gap = abs(now.hour + now.minute / 60 - hour)
    return [n, since_orders, n / (orders - item["first"] + 1), interval_orders, _ratio(since_orders, interval_orders),
            since_days, interval_days, _ratio(since_days, interval_days), n / orders if orders else NAN, cart,
            _ratio(cart, basket), min(gap, 24 - gap), item["dow"][now.weekday()] / n]


def _recent_features(item: dict | None, orders: int) -> list[float]:
    """Recent purchases of the item: share of the last 5 orders, the run ending at its last order, a decayed count.

    >>> _recent_features({"recent": [2, 4, 5, 6], "last": 6}, 7)
    [0.6, 3.0, 1.701]
    """
    recent = (item or {}).get("recent")
    if not recent:
        return [NAN] * 3
    last5 = sum(1 for o in recent if o > orders - 5) / min(5, orders)
    run, expect = 0, recent[-1]
    for o in reversed(recent):
        if o != expect:
            break
        run, expect = run + 1, o - 1
    return [last5, float(run), round(sum(DECAY ** (orders - o) for o in recent), 3)]


def user_features(purchases: dict, now: datetime) -> list[float]:
    """The shopper's own features, the same for every candidate: orders, reorder ratio, basket, gap."""
    orders, lines = purchases.get("orders") or 0, purchases.get("lines") or 0
    return [float(orders), _ratio(purchases.get("reorders") or 0, lines), _ratio(lines, orders),
            _days(now, purchases["last_at"]) if purchases.get("last_at") else NAN]


def candidate_features(purchases: dict, candidate: dict, now: datetime, user: list[float] | None = None) -> list[float]:
    """The feature row (in ``FEATURES`` order) of one candidate for one shopper at ``now``.

    ``candidate``: ``{"id", "category", "title", "popularity", "text_score"}`` (all but ``id`` optional);
    ``user``: :func:`user_features`, when the caller computes it once for many candidates.
    """
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now
    orders, lines = purchases.get("orders") or 0, purchases.get("lines") or 0
    item = (purchases.get("items") or {}).get(str(candidate["id"]))
    category = candidate.get("category")
    in_category = (purchases.get("categories") or {}).get(category, 0) if category else 0
    popularity = candidate.get("popularity")
    words = purchases.get("words") or {}
    shares = [words.get(w, 0) / lines for w in title_words(candidate.get("title"))] if lines else []
    return (_item_features(item, orders, lines, now) + [_ratio(in_category, lines) if lines else NAN]
            + [_ratio(float(item["n"]), in_category) if item and in_category else NAN]
            + _recent_features(item, orders)
            + ([max(shares), sum(shares) / len(shares)] if shares else [NAN, NAN])
            + (user if user is not None else user_features(purchases, now))
            + [float(popularity) if popularity is not None else 0.0, float(candidate.get("text_score") or 0.0)])


def feature_rows(purchases: dict, candidates: list[dict], now: datetime) -> list[list[float]]:
    """One feature row per candidate, in order (the shopper's own features computed once)."""
    user = user_features(purchases, now)
    return [candidate_features(purchases, c, now, user) for c in candidates]
