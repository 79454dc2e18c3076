"""Ranking features of one query's candidates: pure functions, one row per candidate, one column per feature.

The learned ranker (``learned.py``) reads a :class:`FeatureTable` built here from what the one
``_msearch`` of the search returned (``retrieve.Retrieved``) and the fused ranking, so no
feature costs another round trip:

- retrieval: BM25 score, its rank and share of the best BM25 score; the k-NN cosine and rank;
  the fused score and rank;
- named matches (``build.feature_clauses``, in the BM25 request): per field of
  ``build.FEATURE_FIELDS`` (title, brand, description, and whatever field is added there) and
  on the title all terms, the phrase, proximity (within three positions) and fuzzy; 1 / 0, or
  missing for a candidate the BM25 list did not return. (When the cluster returns named
  queries' scores, OpenSearch 3.3+, the value is that field's BM25 score.)
- text overlap from the source fields: share of query terms in the title, partial (prefix)
  matches, numbers and model codes (``2x6``, ``18v``) found in the title, brand / colour /
  material words named in the query, title and query lengths, the query's last term (most often
  the product type: ``metal brackets``) and first term in the title, and the share of query
  terms matched weighted by how rare each is among the query's candidates;
- the product: popularity, price (log) and price relative to the query's candidates (band);
- the shopper (:func:`shopper_features`, missing without a known shopper): their own weight
  for the item, category and brand affinity, price-band fit;
- every ``hooks.ranking_features`` plugin feature that is not built in (one column each).

Built-in columns are computed over all candidates at once (the ranker's budget is 2 ms a
query); plugins keep the hook's one-candidate interface. A model uses the columns named in its
card: a column added later is ignored by models trained before it, a missing one is NaN.

>>> t = feature_table("2x6 bracket", [("a", 1.0), ("b", 0.4)], {"a": {"title": "Simpson 2x6 Bracket"}, "b": {"title": "Shelf"}},
...                   bm25={"a": 9.0}, knn={"b": 0.8}, matched={"a": ["title", "title_all"]})
>>> t.ids, t.column("title_terms_share").tolist(), t.column("numbers_share").tolist()
(['a', 'b'], [1.0, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from shopsearch import hooks
from shopsearch.query.build import FEATURE_FIELDS
from shopsearch.query.personalise import facet_key

MATCH_NAMES = tuple(FEATURE_FIELDS) + ("title_all", "title_phrase", "title_near", "title_fuzzy")
RETRIEVAL = ("bm25", "bm25_rank", "bm25_share", "vector", "vector_rank", "vector_gap", "fused", "fused_rank")
TEXT = ("title_terms_share", "title_prefix_share", "numbers_share", "codes_share", "query_numbers",
        "brand_in_query", "colour_in_query", "material_in_query", "title_terms", "query_terms",
        "last_term_in_title", "first_term_in_title", "rare_terms_share")
PRODUCT = ("popularity", "price_log", "price_vs_candidates", "rating")
SHOPPER = ("shopper_item", "shopper_category", "shopper_brand", "shopper_price_fit")
BUILT_IN = RETRIEVAL + tuple(f"match_{n}" for n in MATCH_NAMES) + TEXT + PRODUCT + SHOPPER
HOOKED_BUILT_INS = ("bm25", "vector", "popularity")  # the hook's own built-ins: columns here already

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d+")
_DIMENSION = re.compile(r"(\d)\s*(?:x|by)\s*(\d)", re.IGNORECASE)
NAN = float("nan")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, ``2 x 6`` joined as ``2x6`` and plural ``s`` dropped (a light stemmer).

    >>> tokens("Simpson 2 x 6 Brackets, 18-Volt")
    ['simpson', '2x6', 'bracket', '18', 'volt']
    """
    out = []
    for t in _TOKEN.findall(_DIMENSION.sub(r"\1x\2", (text or "").lower())):
        out.append(t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t)
    return out


@dataclass
class FeatureTable:
    """Feature values of one query's candidates: ``matrix[i, j]`` is feature ``names[j]`` of ``ids[i]``."""
    ids: list[str]
    names: list[str]
    matrix: np.ndarray = field(repr=False)

    def column(self, name: str) -> np.ndarray:
        """One feature over every candidate."""
        return self.matrix[:, self.names.index(name)]

    def select(self, names: list[str]) -> np.ndarray:
        """The columns ``names`` in that order (a model's feature list); unknown names are NaN."""
        index = {n: j for j, n in enumerate(self.names)}
        out = np.full((len(self.ids), len(names)), np.nan, dtype=np.float64)
        for k, n in enumerate(names):
            if n in index:
                out[:, k] = self.matrix[:, index[n]]
        return out

    def row(self, i: int) -> dict[str, float | None]:
        """One candidate's features by name (None where missing), for ``explain``."""
        return {n: (None if math.isnan(v) else round(float(v), 6)) for n, v in zip(self.names, self.matrix[i])}


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

    >>> text_features(tokens("dewalt 20v drill"), {"title": "DEWALT 20-Volt Drill", "brand": "DEWALT"})[:4]
    (0.6666666666666666, 1.0, 1.0, 0.0)
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


def shopper_features(profile: dict | None, sources: dict[str, dict], ids: list[str]) -> np.ndarray:
    """The :data:`SHOPPER` columns (NaN without a profile): the one place shopper features come from.

    The profile holds ``items`` (the shopper's own weight per item), ``categories`` and
    ``brands`` (affinities) and ``price_band`` ([low, high]); per-item purchase statistics
    (times bought, recency, reorder ratio...) join here as more columns of :data:`SHOPPER`.

    >>> shopper_features({"items": {"a": 2.0}, "brands": {"Acme": 0.5}}, {"a": {"brand": "acme"}, "b": {}}, ["a", "b"]).tolist()
    [[2.0, 0.0, 0.5, nan], [0.0, 0.0, 0.0, nan]]
    """
    out = np.full((len(ids), len(SHOPPER)), np.nan)
    if not profile:
        return out
    items = profile.get("items") or {}
    categories = {facet_key(k): v for k, v in (profile.get("categories") or {}).items()}
    brands = {facet_key(k): v for k, v in (profile.get("brands") or {}).items()}
    band = profile.get("price_band")
    for i, d in enumerate(ids):
        src = sources.get(d, {})
        price = src.get("price")
        fit = NAN
        if band and price is not None:
            fit = 1.0 if band[0] <= price <= band[1] else 0.0
        out[i] = (float(items.get(d, 0.0)), float(categories.get(facet_key(src.get("category") or ""), 0.0)),
                  float(brands.get(facet_key(src.get("brand") or ""), 0.0)), fit)
    return out


def _plugin_features() -> list[tuple[str, object]]:
    return [(n, f) for n, f in hooks.ranking_features() if n not in HOOKED_BUILT_INS]


def feature_table(text: str, ranked: list[tuple[str, float]], sources: dict[str, dict], bm25: dict[str, float],
                  knn: dict[str, float], matched: dict | None = None, profile: dict | None = None) -> FeatureTable:
    """Every feature of the candidates ``ranked`` (fused order, best first) of the query ``text``.

    ``bm25`` and ``knn`` are the retrieval scores by id (the k-NN score is Lucene's
    ``(1 + cosine) / 2``, turned back into the cosine), ``matched`` the feature clauses each BM25
    hit matched (a list of names, or names to scores).
    """
    ids = [d for d, _ in ranked]
    matched = matched or {}
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
        if b is not None:
            hit = matched.get(d) or ()
            scored = hit if isinstance(hit, dict) else None
            m[i, len(RETRIEVAL):t0] = [(scored.get(n, 0.0) if scored is not None else float(n in hit)) for n in MATCH_NAMES]
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
