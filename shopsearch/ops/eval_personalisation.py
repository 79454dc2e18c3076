"""Personalisation benchmark on real shopping behaviour (Instacart order histories).

Protocol (issue #6), every step through the production path:

1. the catalogue (``instacart``: 49,688 products, category = department > aisle) must be
   ingested; ``run`` ingests it through the workers when it has no live index;
2. for each shopper, every order except the last is replayed as ``purchase`` events through
   ``POST /events`` of the middleware; an order's timestamp is placed so that the last order
   falls on the replay's day (``days_since_prior_order`` gives the gaps). Event ids are
   ``<catalogue>-<order>-<product>``, so a second run stores nothing twice;
3. popularity (``shopsearch.profiles.popularity``) and the shoppers' profiles
   (``shopsearch.profiles.update``) are built by the real Celery tasks;
4. for each product of the last order, the shopper search is asked for the product's aisle
   name (a browse query), once without and once with the shopper; the product's rank in the
   top 100 gives the reciprocal rank (0 past 100) and HitRate@10;
5. (``learned``) the buy-again reference is scored, the shopper ranker is trained on the orders
   before each shopper's last one (``eval_shopper_ranker.py``; the last order is never seen) and
   the personalised searches run again with ``personalise_ranker`` on.

Searches go through the middleware's own routes (an in-process Flask client of
``plugin.app.create_app``, or ``--proxy URL`` for a running proxy); identical requests share one
search (one unpersonalised search per aisle, one personalised search per shopper and aisle).
The ablation repeats the personalised searches with one profile feature's weight set to 0.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

from opensearchpy import helpers

from shopsearch.cluster import connect
from shopsearch.errors import InputError
from shopsearch.index.profiles import profile_id
from shopsearch.index.versions import live_index
from shopsearch.learn.events import format_timestamp
from shopsearch.ops.eval_shopper_ranker import buy_again, index_counts, train_on_earlier_orders
from shopsearch.ops.middleware_client import middleware
from shopsearch.privacy import pseudonym
from shopsearch.query.personalise import FEATURES
from shopsearch.query.shopper_rank import model_dir
from shopsearch.settings import Settings
from shopsearch.workers.app import make_app
from shopsearch.workers.dispatch import run_ingest

DEPTH = 100
EVENT_BATCH = 1000


@dataclass(frozen=True)
class Order:
    order_id: str
    number: int
    days_since_prior: float
    products: tuple[str, ...]          # in add-to-cart order
    reordered: tuple[int, ...] = ()    # Instacart's flag per product: bought by this shopper before


def load_orders(path: str | Path, limit_users: int | None = None) -> dict[str, list[Order]]:
    """``{user_id: [Order, ...]}`` in order-number order, from Instacart ``order_lines.tsv``."""
    lines: dict[str, dict[str, list]] = defaultdict(dict)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            order = lines[row["user_id"]].setdefault(row["order_id"], [int(row["order_number"]),
                                                                      float(row["days_since_prior_order"] or 0), []])
            order[2].append((int(row["add_to_cart_order"]), row["product_id"], int(row["reordered"] or 0)))
    users = sorted(lines, key=lambda u: int(u) if u.isdigit() else u)[:limit_users]
    return {u: sorted((Order(oid, n, d, tuple(p for _, p, _ in sorted(ps)), tuple(r for _, _, r in sorted(ps)))
                       for oid, (n, d, ps) in lines[u].items()), key=lambda o: o.number)
            for u in users}


def shopper_id(user: str) -> str:
    return f"instacart-{user}"


def replay_events(user: str, orders: list[Order], catalogue: str, last_at: datetime) -> list[dict]:
    """Purchase events for every order but the last, timed so the last order falls at ``last_at`` (pure).

    >>> o = [Order("1", 1, 0, ("a",)), Order("2", 2, 7, ("b",)), Order("3", 3, 3, ("c",))]
    >>> [(e["object_id"], e["timestamp"][:10]) for e in replay_events("9", o, "ic", datetime(2024, 1, 31))]
    [('a', '2024-01-21'), ('b', '2024-01-28')]
    """
    return [e for order in order_history(user, orders, catalogue, last_at)[:-1] for e in order]


def order_history(user: str, orders: list[Order], catalogue: str, last_at: datetime) -> list[list[dict]]:
    """Every order's purchase events (the last order's too), timed so the last order falls at ``last_at`` (pure)."""
    last_at = last_at.replace(tzinfo=timezone.utc) if last_at.tzinfo is None else last_at
    when, days_before = {}, 0.0
    for order in reversed(orders):
        when[order.order_id] = last_at - timedelta(days=days_before)
        days_before += order.days_since_prior
    return [order_events(user, order, catalogue, when[order.order_id]) for order in orders]


def order_events(user: str, order: Order, catalogue: str, when: datetime) -> list[dict]:
    """One order's purchase events; its order id, number, cart positions and reorder flags as event attributes."""
    flags = order.reordered or (None,) * len(order.products)
    return [{"event_id": f"{catalogue}-{order.order_id}-{product}", "user_id": shopper_id(user),
             "action_name": "purchase", "object_id": product, "catalogue": catalogue,
             "timestamp": format_timestamp(when),
             "event_attributes": {"order_id": order.order_id, "order_number": order.number, "cart_position": position,
                                  **({"reordered": flag} if flag is not None else {})}}
            for position, (product, flag) in enumerate(zip(order.products, flags), 1)]


def reciprocal_rank(ranked: list[str], target: str, depth: int = DEPTH) -> float:
    """1/rank of ``target`` in the first ``depth`` results, 0 past them.

    >>> reciprocal_rank(["a", "b"], "b"), reciprocal_rank(["a"], "z")
    (0.5, 0.0)
    """
    try:
        position = ranked.index(target, 0, depth) + 1
    except ValueError:
        return 0.0
    return 1.0 / position


def score(rankings: Iterable[tuple[list[str], str]]) -> dict:
    """MRR and HitRate@10 over ``(ranked ids, target)`` pairs."""
    rr = [reciprocal_rank(ranked, target) for ranked, target in rankings]
    if not rr:
        return {"mrr": 0.0, "hit@10": 0.0}
    return {"mrr": round(sum(rr) / len(rr), 4), "hit@10": round(sum(r >= 0.1 for r in rr) / len(rr), 4)}


def targets(orders: dict[str, list[Order]], aisle_of: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(user, product, aisle name)`` for every product of each shopper's last order (pure)."""
    return [(u, p, aisle_of[p]) for u, history in orders.items() if len(history) > 1
            for p in history[-1].products if p in aisle_of]


def aisle_names(data_dir: Path) -> dict[str, str]:
    """product id -> aisle name, from ``products.tsv`` and ``aisles.tsv``."""
    with open(data_dir / "aisles.tsv", newline="", encoding="utf-8") as f:
        aisles = {r["aisle_id"]: r["aisle"] for r in csv.DictReader(f, delimiter="\t")}
    with open(data_dir / "products.tsv", newline="", encoding="utf-8") as f:
        return {r["product_id"]: aisles[r["aisle_id"]] for r in csv.DictReader(f, delimiter="\t")
                if r["aisle_id"] in aisles}


def _drop_profiles(client, settings: Settings, catalogue: str, users: list[str]) -> None:
    if client.indices.exists(index=settings.profiles_index):
        helpers.bulk(client, [{"_op_type": "delete", "_index": settings.profiles_index, "_id": profile_id(catalogue, u)}
                              for u in users], raise_on_error=False, refresh=True)


def _post_events(mw, events: list[dict]) -> None:
    status = mw.post("/events", {"events": events})
    if status != 202:
        raise RuntimeError(f"POST /events answered {status}")


def _search(mw, catalogue: str, q: str, user: str | None) -> list[str]:
    body = mw.get(f"/shop/{catalogue}/search", {"q": q, "size": DEPTH, **({"user": user} if user else {})})
    if not isinstance(body, dict) or "hits" not in body:
        raise RuntimeError(f"search {q!r} answered {body}")
    return [h["id"] for h in body["hits"]]


def _ensure_catalogue(settings: Settings, client, catalogue: str, data_dir: Path) -> None:
    """Ingest the Instacart products when the catalogue has no live index yet."""
    if live_index(client, catalogue) is None:
        summary = run_ingest(settings, data_dir / "products.tsv", catalogue, mapping="instacart")
        if not summary.complete:
            raise RuntimeError(f"ingest of {catalogue} incomplete: {summary.as_dict()}")
    if client.count(index=catalogue)["count"] == 0:  # a score over nothing would print MRR 0.0000 as a result
        raise InputError(f"catalogue {catalogue!r} holds no products: ingest {data_dir / 'products.tsv'} first",
                         field="catalogue")


def _replay(mw, orders: dict, catalogue: str, last_at: datetime, progress) -> int:
    """Every order line as a purchase event through ``POST /events``; returns how many were sent."""
    replayed, batch = 0, []
    for n, (user, history) in enumerate(orders.items(), 1):
        batch += replay_events(user, history, catalogue, last_at)
        while len(batch) >= EVENT_BATCH:
            _post_events(mw, batch[:EVENT_BATCH])
            replayed += EVENT_BATCH
            batch = batch[EVENT_BATCH:]
        if progress:
            progress("replay", n, len(orders))
    if batch:
        _post_events(mw, batch)
        replayed += len(batch)
    mw.flush()
    return replayed


def _build_profiles(settings: Settings, client, catalogue: str, orders: dict) -> dict:
    """Popularity and the replayed shoppers' profiles, by the real Celery tasks."""
    app = make_app(settings)
    app.signature("shopsearch.profiles.popularity", args=[catalogue]).apply_async().get(timeout=3600)
    users = [pseudonym(shopper_id(u), settings.pseudonym_salt) for u in orders]
    _drop_profiles(client, settings, catalogue, users)  # built from all replayed events, not on a previous run's
    return app.signature("shopsearch.profiles.update", args=[catalogue, users]).apply_async().get(timeout=3600)


def _unpersonalised(mw, catalogue: str, wanted, progress) -> dict:
    """Each aisle searched once without a shopper; every target scored in its aisle's ranking."""
    rankings: dict[str, list[str]] = {}
    aisles = sorted({a for _, _, a in wanted})
    for n, aisle in enumerate(aisles, 1):
        rankings[aisle] = _search(mw, catalogue, aisle, None)
        if progress:
            progress("search", n, len(aisles))
    return score((rankings[a], p) for _, p, a in wanted)


def _personalised(target, catalogue: str, wanted, progress, label: str) -> dict:
    """Each (shopper, aisle) searched once as that shopper; every target scored in its ranking."""
    rankings: dict[tuple[str, str], list[str]] = {}
    pairs = sorted({(u, a) for u, _, a in wanted})
    for n, (u, a) in enumerate(pairs, 1):
        rankings[(u, a)] = _search(target, catalogue, a, shopper_id(u))
        if progress:
            progress(label, n, len(pairs))
    return score((rankings[(u, a)], p) for u, p, a in wanted)


def _ablation(settings: Settings, catalogue: str, wanted, progress) -> dict:
    """The personalised run again with each profile feature switched off (in process)."""
    out = {}
    for feature in FEATURES:
        variant_mw = middleware(settings.replace(personalise_weights=f"{settings.personalise_weights},{feature}=0"))
        try:
            out[f"without {feature}"] = _personalised(variant_mw, catalogue, wanted, progress, f"without {feature}")
        finally:
            variant_mw.close()
    return out


def _learned(settings: Settings, client, catalogue: str, orders: dict, data_dir: Path, last_at: datetime,
             wanted, progress) -> tuple[dict, dict, dict]:
    """``(buy-again reference, learned shopper ranker's scores, its card)``: trained on the orders
    before each shopper's last, then the personalised searches again with ``personalise_ranker`` on."""
    aisle_of = aisle_names(data_dir)
    counts, _ = index_counts(client, settings, catalogue)
    reference = score(buy_again(orders, aisle_of, counts, wanted))
    histories = {u: order_history(u, h, catalogue, last_at)[:-1] for u, h in orders.items() if len(h) > 2}
    card = train_on_earlier_orders(settings, client, catalogue, histories, aisle_of, product_titles(data_dir))
    learned_mw = middleware(settings.replace(personalise_ranker=True))
    try:
        learned = _personalised(learned_mw, catalogue, wanted, progress, "learned")
    finally:
        learned_mw.close()
    return reference, learned, card


def product_titles(data_dir: Path) -> dict[str, str]:
    """product id -> product name, from ``products.tsv``."""
    with open(data_dir / "products.tsv", newline="", encoding="utf-8") as f:
        return {r["product_id"]: r["product_name"] for r in csv.DictReader(f, delimiter="\t")}


def _ratio(a: dict, b: dict) -> float | None:
    return round(a["mrr"] / b["mrr"], 3) if b["mrr"] else None


def run(settings: Settings, orders_path: str | Path, catalogue: str = "instacart", proxy: str | None = None,
        limit_users: int | None = None, ablation: bool = False, learned: bool = True,
        progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The benchmark (see the module docstring); returns the JSON document of the issue, plus details."""
    if ablation and proxy:
        raise InputError("the ablation changes the middleware's settings, so it runs in process: drop --proxy")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    data_dir = Path(orders_path).resolve().parent
    client = connect(settings, timeout=120)
    _ensure_catalogue(settings, client, catalogue, data_dir)
    timings["ingest_s"] = round(time.perf_counter() - clock, 1)

    orders = load_orders(orders_path, limit_users)
    wanted = targets(orders, aisle_names(data_dir))
    last_at = datetime.now(timezone.utc).replace(microsecond=0)
    mw = middleware(settings, proxy)
    try:
        clock = time.perf_counter()
        replayed = _replay(mw, orders, catalogue, last_at, progress)
        timings["replay_s"] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        profiled = _build_profiles(settings, client, catalogue, orders)
        timings["profiles_s"] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        unpersonalised = _unpersonalised(mw, catalogue, wanted, progress)
        personalised = _personalised(mw, catalogue, wanted, progress, "personalised")
        timings["search_s"] = round(time.perf_counter() - clock, 1)
    finally:
        mw.close()

    doc = {"users": len(orders), "targets": len(wanted), "unpersonalised": unpersonalised,
           "personalised": personalised, "ratio_mrr": _ratio(personalised, unpersonalised),
           "events_replayed": replayed, "profiles_updated": profiled.get("profiles_updated"),
           "settings": {k: getattr(settings, k) for k in ("personalise_weights", "personalise_max_boost",
                                                          "browse_text_weight", "popularity_weight",
                                                          "profile_half_life_days", "text_model",
                                                          "shopper_ranker_orders")},
           "timings": timings}
    if learned:  # in process: the learned searches need personalise_ranker on in the middleware
        clock = time.perf_counter()
        doc["buy_again"], doc["learned"], card = _learned(settings, client, catalogue, orders, data_dir, last_at,
                                                          wanted, progress)
        doc["ratio_mrr_learned"] = _ratio(doc["learned"], unpersonalised)
        doc["shopper_ranker"] = {"path": str(model_dir(settings, catalogue)), **card}
        timings["learned_s"] = round(time.perf_counter() - clock, 1)
    if ablation:  # in process only (checked at the start): a running proxy has its own settings
        doc["ablation"] = _ablation(settings, catalogue, wanted, progress)
    return doc
