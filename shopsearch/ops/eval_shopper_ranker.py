"""The learned side of ``eval personalisation``: train the shopper ranker on earlier orders, and the
buy-again reference.

Training (:func:`train_on_earlier_orders`): every shopper's orders before the evaluated last
one, the last ``shopper_ranker_orders`` of them each the answer to the orders before it
(``shopsearch/learn/shopper_ranker.py`` ``training_groups``), so the evaluated order is never
seen; one shopper in ten is kept apart as validation (its MAP@10 in the card). The catalogue's side comes from the
live index (its popularity counts and scale, as the searches see them) and from one retrieval
per aisle (the text scores of the aisle query). The model is saved where the query path looks
for it (``shopsearch/query/shopper_rank.py`` ``model_dir``), with its card.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from opensearchpy import helpers

from shopsearch.index.catalogue import live_meta
from shopsearch.learn.shopper_ranker import Catalogue, save, train, training_groups
from shopsearch.query.searcher import Searcher
from shopsearch.query.shopper_rank import model_dir, text_scores
from shopsearch.settings import Settings

VALID_SHARE = 0.1


def buy_again(orders: dict, aisle_of: dict[str, str], counts: dict[str, float], wanted) -> list[tuple[list[str], str]]:
    """The reference ranking: in the target's aisle, the shopper's own products by how often they
    bought them, then every other product by popularity (pure; ``(ranked ids, target)`` pairs).

    >>> from shopsearch.ops.eval_personalisation import Order
    >>> o = {"u": [Order("1", 1, 0, ("a", "b", "a2")), Order("2", 2, 1, ("b",)), Order("3", 3, 1, ("a",))]}
    >>> buy_again(o, {"a": "x", "b": "x", "a2": "x"}, {"a2": 9.0}, [("u", "a", "x")])
    [(['b', 'a2', 'a'], 'a')]
    """
    in_aisle: dict[str, list[str]] = defaultdict(list)
    for product, aisle in aisle_of.items():
        in_aisle[aisle].append(product)
    by_popularity = {a: sorted(ps, key=lambda d: (-counts.get(d, 0.0), d)) for a, ps in in_aisle.items()}
    own = {u: Counter(p for order in history[:-1] for p in set(order.products)) for u, history in orders.items()}
    out = []
    for user, target, aisle in wanted:
        mine = sorted((d for d in own[user] if aisle_of.get(d) == aisle), key=lambda d: (-own[user][d], -counts.get(d, 0.0), d))
        chosen = set(mine)
        out.append((mine + [d for d in by_popularity.get(aisle, []) if d not in chosen], target))
    return out


def index_counts(client, settings: Settings, catalogue: str) -> tuple[dict[str, float], dict]:
    """The live index's popularity counts per product and the scale that made ``popularity_norm``."""
    index, mapping = live_meta(client, catalogue)
    hits = helpers.scan(client, index=index, query={"query": {"exists": {"field": "popularity"}}},
                        _source_includes=["popularity"])
    counts = {h["_id"]: float(h["_source"]["popularity"]) for h in hits if h["_source"].get("popularity")}
    return counts, mapping.get("_meta", {}).get("scales", {}).get("popularity_events", {})


def aisle_text_scores(settings: Settings, searcher: Searcher, catalogue: str, aisles: list[str]) -> dict[str, dict]:
    """Per aisle, the fused text score of each product its query retrieves (as the ranker sees it)."""
    live = searcher.live(catalogue)
    out = {}
    for aisle in aisles:
        got = searcher.retrieve(live, aisle, settings.candidate_depth, [], want_vector=settings.vector_weight > 0)
        out[aisle] = text_scores(got.bm25, got.knn, settings.vector_weight)
    return out


def train_on_earlier_orders(settings: Settings, client, catalogue: str, histories: dict[str, list[list[dict]]],
                            aisle_of: dict[str, str], titles: dict[str, str]) -> dict:
    """Train the catalogue's shopper ranker on ``histories`` (each shopper's purchase events per order,
    oldest first, the evaluated last order left out); returns its card."""
    counts, scale = index_counts(client, settings, catalogue)
    products: dict[str, list[str]] = defaultdict(list)
    for product, aisle in aisle_of.items():
        products[aisle].append(product)
    searcher = Searcher(client, settings)
    wanted_aisles = sorted({aisle_of[e["object_id"]] for h in histories.values() for order in h for e in order
                            if e["object_id"] in aisle_of})
    catalogue_side = Catalogue(category_of=aisle_of, titles=titles, products=dict(products), counts=counts,
                               text=aisle_text_scores(settings, searcher, catalogue, wanted_aisles), scale=scale)
    answers = [-k for k in range(1, settings.shopper_ranker_orders + 1)]
    groups = training_groups(histories, catalogue_side, answers, settings.candidate_depth, settings.browse_text_weight)
    users = sorted(histories)
    random.Random(7).shuffle(users)
    held = set(users[:max(1, int(len(users) * VALID_SHARE))])
    model = train([g for g in groups if g.user not in held], [g for g in groups if g.user in held])
    model.card["training"]["answer_orders"] = f"the {settings.shopper_ranker_orders} orders before each shopper's last"
    save(model, model_dir(settings, catalogue))
    return model.card
