"""The shopper ranker: LightGBM LambdaMART over user × item features, trained on earlier orders.

Training data (pure, :func:`training_groups`): for each shopper, an earlier order ``k`` is the
answer and only the orders before it are the history, so the order that is evaluated later
(the last one) is never seen. One group per (shopper, order, category the order bought in),
like a browse query for that category: its candidates are what the search would offer there
(the category's most popular products, its text matches, and the shopper's own products in
it), the products bought in order ``k`` are the relevant ones (label 1). The features are those
the query path computes (``shopsearch/query/shopper_features.py``) from the purchase statistics
the profile builder makes (``shopsearch/learn/profile_purchases.py``) of the history's events;
popularity is the catalogue's, less the shopper's own purchases from order ``k`` on.

:class:`~shopsearch.query.shopper_rank.ShopperModel` is the trained model (``train``,
``save``, ``load``, ``predict``); it lives in the query layer, which serves it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import numpy as np

from shopsearch.clock import parse_time
from shopsearch.errors import InputError
from shopsearch.files import write_json_atomic
from shopsearch.ingest.normalise import apply_scale, fit_popularity_scale
from shopsearch.learn.events import ACTION_WEIGHTS
from shopsearch.learn.profile_purchases import build_purchases
from shopsearch.query.fuse import blend_browse, cut_keeping
from shopsearch.query.shopper_features import FEATURES, feature_rows
from shopsearch.query.shopper_rank import CARD_FILE, MODEL_FILE, ShopperModel

PARAMS = {"objective": "lambdarank", "metric": "map", "eval_at": [10], "learning_rate": 0.05, "num_leaves": 15,
          "min_data_in_leaf": 50, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
          "lambda_l2": 1.0, "verbose": -1, "seed": 7, "num_threads": 2, "deterministic": True}
# A fixed number of rounds: early stopping on the held-out tenth of the shoppers (40 here) stopped
# anywhere from 9 to 399 rounds and scored worse on the tuning split than 100 rounds every time
# (0.5299 / 0.5310, 0.5269 / 0.5318, 0.5284 / 0.5348 MRR; 300 rounds 0.5242): see ARCHITECTURE.
ROUNDS, EARLY_STOP = 100, 40


@dataclass
class Group:
    """One ranking question: a shopper's candidates in one category at one time, and what was bought."""
    user: str
    order: int                 # index of the answer order in the shopper's history
    category: str
    ids: list[str]
    rows: np.ndarray           # one feature row per candidate (float64: a tenth of the memory of lists)
    labels: list[int]
    missed: int = 0            # bought in the category but not among the candidates


@dataclass
class Catalogue:
    """What training needs of the catalogue: categories, their products, popularity counts, text scores."""
    category_of: dict[str, str]
    titles: dict[str, str]
    products: dict[str, list[str]]                  # category -> its products
    counts: dict[str, float]                        # action-weighted event counts (what popularity_norm scales)
    text: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> id -> text score
    scale: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scale = self.scale or fit_popularity_scale(self.counts.values())
        self.base = self.popularity(self.counts)
        # per category, its products with a popularity, most popular first (the browse query's list)
        self.ranked = {c: sorted((d for d in ps if d in self.base), key=lambda d: (-self.base[d], d))
                       for c, ps in self.products.items()}

    def popularity(self, counts: dict[str, float]) -> dict[str, float]:
        """``popularity_norm`` of every product with a count, as the index holds it."""
        return {d: apply_scale(c, self.scale) for d, c in counts.items() if c > 0}


def candidates(catalogue: Catalogue, category: str, popularity: dict[str, float], own: set[str], depth: int,
               text_weight: float, changed: set[str] = frozenset()) -> list[str]:
    """The candidates of a browse query for ``category``, as the search computes them (``stages.py``).

    ``popularity`` is the catalogue's except for the products in ``changed``."""
    moved = {d for d in changed if catalogue.category_of.get(d) == category}
    head = catalogue.ranked.get(category, [])[:depth + len(moved)]
    popular = sorted((d for d in set(head) | moved if d in popularity), key=lambda d: (-popularity[d], d))[:depth]
    text = catalogue.text.get(category, {})
    in_category = set(catalogue.products.get(category, []))
    pool = {d: popularity.get(d, 0.0) for d in set(popular) | set(text) | (own & in_category)}
    ranked = blend_browse(pool, sorted(text.items(), key=lambda kv: -kv[1]), text_weight)
    return [d for d, _ in cut_keeping(ranked, depth, own)]


def training_groups(histories: dict[str, list[list[dict]]], catalogue: Catalogue, answer_orders: list[int],
                    depth: int = 100, text_weight: float = 0.1, uncounted_tail: int = 0) -> list[Group]:
    """Ranking groups: each shopper's order at each index of ``answer_orders`` (-1: the last, -2: the
    one before ...), from the events of the orders before it only.

    ``histories``: per shopper, their orders oldest first, each the list of its purchase events
    (``timestamp``, ``object_id``, ``event_attributes``); ``catalogue.counts``: what the catalogue's
    popularity counts (the shopper's purchases from the answer order on are taken out of it;
    ``uncounted_tail``: how many of each history's last orders it does not count, so are not taken out).
    """
    groups = []
    for user, orders in histories.items():
        for back in answer_orders:
            k = len(orders) + back
            if k < 1:
                continue
            groups += _groups_of(user, orders, k, catalogue, depth, text_weight, len(orders) - uncounted_tail)
    return groups


def _groups_of(user: str, orders: list[list[dict]], k: int, catalogue: Catalogue, depth: int,
               text_weight: float, counted: int) -> list[Group]:
    history = [e for order in orders[:k] for e in order]
    purchases = build_purchases(history, {d: {"category": catalogue.category_of.get(d), "title": catalogue.titles.get(d)}
                                          for d in {e["object_id"] for e in history}})
    now = parse_time(orders[k][0]["timestamp"])
    later = Counter(e["object_id"] for order in orders[k:counted] for e in order)
    counts = {d: catalogue.counts.get(d, 0.0) - ACTION_WEIGHTS["purchase"] * later.get(d, 0) for d in later}
    popularity = {**catalogue.base, **catalogue.popularity(counts)}
    for d in later:
        if counts[d] <= 0:
            popularity.pop(d, None)
    own = set(purchases["items"])
    bought: dict[str, set[str]] = {}
    for e in orders[k]:
        if e["object_id"] in catalogue.category_of:
            bought.setdefault(catalogue.category_of[e["object_id"]], set()).add(e["object_id"])
    out = []
    for category, wanted in sorted(bought.items()):
        ids = candidates(catalogue, category, popularity, own, depth, text_weight, changed=set(later))
        rows = np.asarray(feature_rows(purchases, [{"id": d, "category": category, "title": catalogue.titles.get(d),
                                                    "popularity": popularity.get(d),
                                                    "text_score": catalogue.text.get(category, {}).get(d, 0.0)}
                                                   for d in ids], now), dtype=np.float64).reshape(len(ids), len(FEATURES))
        out.append(Group(user, k, category, ids, rows, [int(d in wanted) for d in ids],
                         missed=len(wanted - set(ids))))
    return out


def _dataset(groups: list[Group], reference: lightgbm.Dataset | None = None) -> lightgbm.Dataset:
    rows = np.vstack([np.asarray(g.rows, dtype=np.float64) for g in groups])
    labels = [y for g in groups for y in g.labels]
    return lightgbm.Dataset(rows, np.asarray(labels), group=[len(g.ids) for g in groups],
                            feature_name=list(FEATURES), reference=reference, free_raw_data=False)


def train(groups: list[Group], valid: list[Group] = (), params: dict | None = None, rounds: int = ROUNDS,
          early_stop: bool = False) -> ShopperModel:
    """A LambdaMART model on the groups with a positive, ``rounds`` rounds; ``valid``'s MAP@10 goes
    into the card (and, with ``early_stop``, stops training when it stops improving)."""
    used = [g for g in groups if any(g.labels)]
    if not used:
        raise InputError("no training group has a bought product among its candidates: too few shoppers or orders")
    checked = [g for g in valid if any(g.labels)]
    params = {**PARAMS, **(params or {})}
    train_set = _dataset(used)
    callbacks, sets, seen = [], [], {}
    if checked:
        sets = [_dataset(checked, train_set)]
        callbacks = [lightgbm.record_evaluation(seen)] + ([lightgbm.early_stopping(EARLY_STOP, verbose=False)]
                                                          if early_stop else [])
    booster = lightgbm.train(params, train_set, num_boost_round=rounds, valid_sets=sets, callbacks=callbacks)
    gains = booster.feature_importance("gain")
    rounds_used = booster.best_iteration or rounds
    curve = next(iter(next(iter(seen.values())).values()), []) if seen else []
    card = {"features": list(FEATURES), "params": params, "rounds": rounds_used,
            **({"validation_map@10": round(float(curve[rounds_used - 1]), 4)} if len(curve) >= rounds_used else {}),
            "training": {"groups": len(used), "rows": sum(len(g.ids) for g in used),
                         "positives": sum(sum(g.labels) for g in used), "validation_groups": len(checked),
                         "users": len({g.user for g in used})},
            "importance_gain": {n: round(float(v), 3) for n, v in sorted(zip(FEATURES, gains), key=lambda kv: -kv[1])}}
    return ShopperModel(booster, card)


def save(model: ShopperModel, directory: str | Path, figures: dict | None = None) -> Path:
    """Write ``model.txt`` and ``card.json`` (with ``figures`` when given) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(directory / f"{MODEL_FILE}.tmp"), num_iteration=model.booster.best_iteration or None)
    (directory / f"{MODEL_FILE}.tmp").replace(directory / MODEL_FILE)
    write_json_atomic(directory / CARD_FILE, {**model.card, **({"figures": figures} if figures else {})})
    return directory


def load(directory: str | Path) -> ShopperModel:
    """The model ``save`` wrote."""
    return ShopperModel.load(directory)


def predict(model: ShopperModel, rows: list[list[float]]) -> list[float]:
    """One score per feature row."""
    return model.predict(rows)


def reciprocal_ranks(model: ShopperModel, groups: list[Group]) -> list[float]:
    """1/rank of every bought product in its group's ranking by the model (0 when not a candidate)."""
    out = []
    for g in groups:
        scores = model.predict(g.rows)
        order = sorted(range(len(g.ids)), key=lambda i: -scores[i])
        rank_of = {g.ids[i]: r for r, i in enumerate(order, 1)}
        out += [1.0 / rank_of[d] for d, y in zip(g.ids, g.labels) if y] + [0.0] * g.missed
    return out


def mean(values: list[float]) -> float:
    """The mean rounded to 4 places, 0 for none."""
    return round(sum(values) / len(values), 4) if values else 0.0
