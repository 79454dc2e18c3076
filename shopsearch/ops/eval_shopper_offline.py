"""The shopper ranker measured offline on Instacart histories: no cluster, the same pure functions.

``eval personalisation --learned`` measures the ranker through the middleware, which needs the
49,688-product catalogue ingested and every order replayed; this measures the ranker itself in
a minute, with the functions the online path uses (``build_purchases``, ``feature_rows``,
``training_groups``, the browse candidates). Popularity is counted from the orders the index
would hold (every order but each shopper's last, action-weighted as ``popularity_counts``);
text scores are left out (no index).

Two splits, so that nothing is tuned on the orders the evaluation scores:

- ``tune``: each shopper's last order is dropped altogether; the ranker trains on the
  ``orders`` orders before the (new) last one and is scored on that one (order n−1). Every
  change is decided here.
- ``eval``: as ``eval personalisation``: trains on the ``orders`` orders before the last and
  is scored on the last one (order n), once per change kept, to report.

Each split scores, on the same candidates, popularity in the aisle (the unpersonalised browse),
buy-again (own count, then popularity) and the ranker: MRR and HitRate@10 over every product of
the scored orders (misses past the candidates count 0).

    ./run python -m shopsearch.ops.eval_shopper_offline --orders ../shared/data/instacart/order_lines.tsv --split tune
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from shopsearch.learn.profile_build import popularity_counts
from shopsearch.learn.shopper_ranker import Catalogue, Group, reciprocal_ranks, train, training_groups
from shopsearch.ops.eval_personalisation import aisle_names, load_orders, order_history, product_titles
from shopsearch.ops.eval_shopper_ranker import VALID_SHARE
from shopsearch.query.shopper_features import FEATURES

LAST_AT = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def metrics(rr: list[float]) -> dict:
    """MRR and HitRate@10 of reciprocal ranks (4 places).

    >>> metrics([1.0, 0.5, 0.0, 0.05])
    {'mrr': 0.3875, 'hit@10': 0.5, 'targets': 4}
    """
    if not rr:
        return {"mrr": 0.0, "hit@10": 0.0, "targets": 0}
    return {"mrr": round(sum(rr) / len(rr), 4), "hit@10": round(sum(r >= 0.1 for r in rr) / len(rr), 4),
            "targets": len(rr)}


def baseline_ranks(groups: list[Group], key) -> list[float]:
    """Reciprocal ranks of the bought products when each group is ordered by ``key(group, i)`` (higher first)."""
    out = []
    for g in groups:
        order = sorted(range(len(g.ids)), key=lambda i: (-key(g, i), i))
        rank_of = {g.ids[i]: r for r, i in enumerate(order, 1)}
        out += [1.0 / rank_of[d] for d, y in zip(g.ids, g.labels) if y] + [0.0] * g.missed
    return out


def _nan0(v: float) -> float:
    return 0.0 if v != v else v


def popularity_key(g: Group, i: int) -> float:
    """The unpersonalised browse order: the candidate's popularity."""
    return _nan0(g.rows[i][FEATURES.index("popularity")])


def buy_again_key(g: Group, i: int) -> float:
    """Buy-again: the shopper's own count first, popularity (in [0, 1]) among equals."""
    return _nan0(g.rows[i][FEATURES.index("times_bought")]) * 10.0 + popularity_key(g, i)


def split(orders: dict, name: str, n_orders: int) -> tuple[dict, list[int], list[int]]:
    """``(histories, training answer orders, scored answer order)`` of a split (see the module docstring)."""
    full = {u: order_history(u, h, "ic", LAST_AT) for u, h in orders.items() if len(h) > 2}
    if name == "tune":
        full = {u: h[:-1] for u, h in full.items() if len(h) > 3}
    return full, [-k for k in range(2, n_orders + 2)], [-1]


def build(orders_path: str | Path, split_name: str, n_orders: int, limit_users: int | None = None) -> tuple:
    """``(training groups, early-stopping groups, scored groups, users)`` of a split."""
    data_dir = Path(orders_path).resolve().parent
    orders = load_orders(orders_path, limit_users)
    aisle_of, titles = aisle_names(data_dir), product_titles(data_dir)
    histories, answers, scored = split(orders, split_name, n_orders)
    # the index holds every order but the scored one: the scored order's purchases are not counted
    counts = popularity_counts([e for h in histories.values() for order in h[:-1] for e in order])
    products: dict[str, list[str]] = defaultdict(list)
    for product, aisle in aisle_of.items():
        products[aisle].append(product)
    side = Catalogue(category_of=aisle_of, titles=titles, products=dict(products), counts=counts)
    groups = training_groups(histories, side, answers, uncounted_tail=1)
    tests = training_groups(histories, side, scored, uncounted_tail=1)
    users = sorted(histories)
    random.Random(7).shuffle(users)
    held = set(users[:max(1, int(len(users) * VALID_SHARE))])
    return [g for g in groups if g.user not in held], [g for g in groups if g.user in held], tests, len(users)


def run(orders_path: str | Path, split_name: str, n_orders: int, params: dict | None = None,
        limit_users: int | None = None, cache: str | None = None) -> dict:
    """Train on the split's earlier orders and score its last one; returns the figures and the card.

    ``cache``: a pickle of the built groups, written when missing, read when present (to compare
    training parameters on the same groups; delete it when the features change)."""
    clock = time.perf_counter()
    if cache and Path(cache).exists():
        fit, stop, tests, users = pickle.loads(Path(cache).read_bytes())
    else:
        fit, stop, tests, users = build(orders_path, split_name, n_orders, limit_users)
        if cache:
            Path(cache).write_bytes(pickle.dumps((fit, stop, tests, users)))
    built = time.perf_counter() - clock
    model = train(fit, stop, params)
    doc = {"split": split_name, "users": users, "training_orders": n_orders,
           "popularity": metrics(baseline_ranks(tests, popularity_key)),
           "buy_again": metrics(baseline_ranks(tests, buy_again_key)),
           "learned": metrics(reciprocal_ranks(model, tests)),
           "card": model.card, "build_s": round(built, 1), "total_s": round(time.perf_counter() - clock, 1)}
    doc["ratio_learned_vs_popularity"] = round(doc["learned"]["mrr"] / doc["popularity"]["mrr"], 3)
    return doc


def main(argv: list[str] | None = None) -> None:
    """Command line: print the figures (and write them as JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--orders", required=True)
    p.add_argument("--split", choices=("tune", "eval"), default="tune")
    p.add_argument("--training-orders", type=int, default=5)
    p.add_argument("--params", default="{}", help="LightGBM parameters over the defaults (JSON)")
    p.add_argument("--limit-users", type=int)
    p.add_argument("--cache", help="pickle of the built groups (written when missing, read when present)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    doc = run(a.orders, a.split, a.training_orders, json.loads(a.params), a.limit_users, a.cache)
    print(f"split {doc['split']}, users {doc['users']}, targets {doc['learned']['targets']}, "
          f"training orders {doc['training_orders']}, {doc['total_s']} s")
    print("| ranking | MRR | HitRate@10 |\n|---|---|---|")
    for name in ("popularity", "buy_again", "learned"):
        print(f"| {name} | {doc[name]['mrr']:.4f} | {doc[name]['hit@10']:.4f} |")
    print(f"learned / popularity MRR {doc['ratio_learned_vs_popularity']}; rounds {doc['card']['rounds']}; "
          f"top gains {list(doc['card']['importance_gain'].items())[:6]}")
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
