"""The learned ranker's features as first written: one candidate at a time (a frozen reference).

``tests/test_learned_features.py`` checks that ``shopsearch/query/features.py``, which computes
the same columns over all candidates at once, gives the very same numbers on real Home Depot
text, so a model trained on either reads the same features. Not imported by the package.
"""

from __future__ import annotations

import math
import re

import numpy as np

from shopsearch import hooks
from shopsearch.query.features import FeatureTable, shopper_features

# the columns as first written (the package has added columns since; these keep their values)
MATCH_NAMES = ("title", "title_all", "title_phrase", "title_near", "title_fuzzy")
RETRIEVAL = ("bm25", "bm25_rank", "bm25_share", "vector", "vector_rank", "vector_gap", "fused", "fused_rank")
TEXT = ("title_terms_share", "title_prefix_share", "numbers_share", "codes_share", "query_numbers",
        "brand_in_query", "colour_in_query", "material_in_query", "title_terms", "query_terms",
        "last_term_in_title", "first_term_in_title", "rare_terms_share")
PRODUCT = ("popularity", "price_log", "price_vs_candidates", "rating")
SHOPPER = ("shopper_item", "shopper_category", "shopper_brand", "shopper_price_fit")
BUILT_IN = RETRIEVAL + tuple(f"match_{n}" for n in MATCH_NAMES) + TEXT + PRODUCT + SHOPPER

HOOKED_BUILT_INS = ("bm25", "vector", "popularity")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d+")
_DIMENSION = re.compile(r"(\d)\s*(?:x|by)\s*(\d)", re.IGNORECASE)
NAN = float("nan")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, ``2 x 6`` joined as ``2x6`` and plural ``s`` dropped (a light stemmer).

    """
    out = []
    for t in _TOKEN.findall(_DIMENSION.sub(r"\1x\2", (text or "").lower())):
        out.append(t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t)
    return out


def _ranks(ids: list[str], scores: dict[str, float]) -> dict[str, int]:
    order = sorted(scores, key=lambda d: -scores[d])
    return {d: r for r, d in enumerate(order, 1)}


def _share(wanted: list[str], have: set[str]) -> float:
    return sum(t in have for t in wanted) / len(wanted) if wanted else NAN


def text_features(query_terms: list[str], source: dict, rarity: dict[str, float] | None = None,
                  title: list[str] | None = None) -> tuple[float, ...]:
    """The :data:`TEXT` features of one candidate (pure); ``rarity``: each query term's weight
    (1 minus the share of the query's candidates whose title has it), default 1; ``title``: the
    title's tokens when the caller has them already.

    ``20v`` is not a title word, but a prefix of one (``20``), and its number is in the title:

    """
    title = tokens(source.get("title") or "") if title is None else title
    have = set(title)
    numbers_wanted = [t for t in query_terms if _DIGITS.search(t)]
    title_numbers = {n for t in title for n in _DIGITS.findall(t)}
    q_set = set(query_terms)
    prefix = sum(any(len(t) >= 3 and (w.startswith(t) or t.startswith(w)) for w in have) for t in query_terms)

    def named(value) -> float:
        words = tokens(value) if isinstance(value, str) else []
        return _share(words, q_set) if words else NAN

    weights = [(rarity or {}).get(t, 1.0) for t in query_terms]
    total = sum(weights)
    rare = sum(w for t, w in zip(query_terms, weights) if t in have) / total if total > 0 else NAN

    return (_share(query_terms, have), prefix / len(query_terms) if query_terms else NAN,
            _share([n for t in numbers_wanted for n in _DIGITS.findall(t)], title_numbers),
            _share(numbers_wanted, have), float(len(numbers_wanted)),
            named(source.get("brand")), named(source.get("colour")), named(source.get("material")),
            float(len(title)), float(len(query_terms)),
            float(query_terms[-1] in have) if query_terms else NAN, float(query_terms[0] in have) if query_terms else NAN,
            rare)


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein without repeated edits of a substring)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def title_matches(q: list[str], title: list[str]) -> tuple[float, ...]:
    """Any query term in the title, all, the phrase, all within three extra positions, all within a typo
    (words with a digit exact)."""
    present = [t in title for t in q]
    every = all(present) and bool(q)
    phrase = every and any(title[i:i + len(q)] == q for i in range(len(title)))
    width = len(set(q)) + 3
    near = every and any(set(q) <= set(title[i:i + width]) for i in range(len(title)))
    def close(t, w):
        edits = 0 if len(t) <= 2 or any(c.isdigit() for c in t) else 1 if len(t) <= 5 else 2
        return w == t or (edits > 0 and w[0] == t[0] and osa_distance(t, w) <= edits)
    fuzzy = bool(q) and all(any(close(t, w) for w in title) for t in q)
    return float(any(present)), float(every), float(phrase), float(near), float(fuzzy)


def _plugin_features() -> list[tuple[str, object]]:
    return [(n, f) for n, f in hooks.ranking_features() if n not in HOOKED_BUILT_INS]


def reference_feature_table(text: str, ranked: list[tuple[str, float]], sources: dict[str, dict], bm25: dict[str, float],
                  knn: dict[str, float], profile: dict | None = None) -> FeatureTable:
    """Every feature of the candidates ``ranked`` (fused order, best first) of the query ``text``.

    ``bm25`` and ``knn`` are the retrieval scores by id (the k-NN score is Lucene's
    ``(1 + cosine) / 2``, turned back into the cosine).
    """
    ids = [d for d, _ in ranked]
    q = tokens(text)
    bm25_ranks, knn_ranks = _ranks(ids, bm25), _ranks(ids, knn)
    best = max(bm25.values(), default=0.0) or 1.0
    closest = max(knn.values(), default=None)
    titles = [tokens(sources.get(d, {}).get("title") or "") for d in ids]
    sets = [set(t) for t in titles]
    rarity = {t: 1.0 - sum(t in have for have in sets) / len(ids) for t in set(q)} if ids else {}
    prices = [sources.get(d, {}).get("price") for d in ids]
    known = [p for p in prices if p is not None and p > 0]
    median = float(np.median(known)) if known else None
    plugins = _plugin_features()
    names = list(BUILT_IN) + [n for n, _ in plugins]
    m = np.full((len(ids), len(names)), np.nan)
    n_match = len(MATCH_NAMES)
    t0 = len(RETRIEVAL) + n_match
    p0 = t0 + len(TEXT)
    for i, (d, fused) in enumerate(ranked):
        src = sources.get(d, {})
        b, v = bm25.get(d), knn.get(d)
        m[i, 0:len(RETRIEVAL)] = (NAN if b is None else b, bm25_ranks.get(d, NAN), NAN if b is None else b / best,
                                  NAN if v is None else 2.0 * v - 1.0, knn_ranks.get(d, NAN),
                                  NAN if v is None else 2.0 * (closest - v), fused, i + 1)
        m[i, len(RETRIEVAL):t0] = title_matches(q, titles[i])
        m[i, t0:p0] = text_features(q, src, rarity, titles[i])
        price = prices[i]
        m[i, p0:p0 + len(PRODUCT)] = (
            src.get("popularity_norm") if src.get("popularity_norm") is not None else NAN,
            math.log1p(price) if price is not None and price >= 0 else NAN,
            math.log(price / median) if price and median else NAN,
            src.get("rating_norm") if src.get("rating_norm") is not None else NAN)
    s0 = p0 + len(PRODUCT)
    m[:, s0:s0 + len(SHOPPER)] = shopper_features(profile, sources, ids)
    for j, (_, feature) in enumerate(plugins, len(BUILT_IN)):
        for i, (d, fused) in enumerate(ranked):
            value = feature({"id": d, "score": fused, "bm25": bm25.get(d), "vector": knn.get(d), "source": sources.get(d, {})})
            m[i, j] = NAN if value is None else float(value)
    return FeatureTable(ids, names, m)
