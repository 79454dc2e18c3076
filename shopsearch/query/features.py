"""Ranking features of one query's candidates: pure functions, one row per candidate, one column per feature.

The learned ranker (``learned.py``) reads a :class:`FeatureTable` built here from what the one
``_msearch`` of the search returned (``retrieve.Retrieved``) and the fused ranking, so no
feature costs another round trip:

- retrieval: BM25 score, its rank and share of the best BM25 score; the k-NN cosine and rank;
  the fused score and rank;
- title matches (``title_matches.py``, 1 / 0 for every candidate): any query term, all of
  them, the phrase, all within three extra positions (proximity), and all within a typo
  (Lucene's fuzzy ``AUTO``: one edit up to five letters, two beyond; the first letter exact;
  sizes and model numbers exact).
  They were named queries in the BM25 request until #13; evaluated by OpenSearch for each hit
  in the fetch phase, they cost 2.6 ms of its 4 ms, and only BM25 hits had them.
- text overlap from the source fields: share of query terms in the title, partial (prefix)
  matches, numbers and model codes (``2x6``, ``18v``) found in the title, brand / colour /
  material words named in the query, title and query lengths, the query's last term (most often
  the product type: ``metal brackets``) and first term in the title, and the share of query
  terms matched weighted by how rare each is among the query's candidates; sizes in one spelling
  (``2 in.`` = ``2"``) matched or contradicted, query terms in the title or the brand / colour /
  material, query word pairs in order, the title's words the query names; the title's own BM25
  score from the catalogue's title statistics (``title_bm25.py``; NaN without them);
- the product: popularity, price (log) and price relative to the query's candidates (band);
- the shopper (:func:`shopper_features`, missing without a known shopper): their own weight
  for the item, category and brand affinity, price-band fit;
- every ``hooks.ranking_features`` plugin feature that is not built in (one column each).

Built-in columns are computed over all candidates at once (the ranker's budget is 2 ms a
query); plugins keep the hook's one-candidate interface. A model uses the columns named in its
card: a column added later is ignored by models trained before it, a missing one is NaN.

>>> t = feature_table("2x6 bracket", [("a", 1.0), ("b", 0.4)], {"a": {"title": "Simpson 2x6 Bracket"}, "b": {"title": "Shelf"}},
...                   bm25={"a": 9.0}, knn={"b": 0.8})
>>> t.ids, t.column("title_terms_share").tolist(), t.column("numbers_share").tolist()
(['a', 'b'], [1.0, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import functools
import math
import operator
import re
import sys
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from shopsearch import hooks
from shopsearch.query.personalise import facet_key
from shopsearch.query.title_bm25 import TitleStats, title_bm25
from shopsearch.query.title_matches import (MATCH_NAMES, TitleTerms, match_columns, named_words_share,
                                            pairs_in_order_share)

RETRIEVAL = ("bm25", "bm25_rank", "bm25_share", "vector", "vector_rank", "vector_gap", "fused", "fused_rank")
TEXT = ("title_terms_share", "title_prefix_share", "numbers_share", "codes_share", "query_numbers",
        "brand_in_query", "colour_in_query", "material_in_query", "title_terms", "query_terms",
        "last_term_in_title", "first_term_in_title", "rare_terms_share",
        "sizes_share", "size_conflict", "covered_share", "pairs_share", "title_in_query", "title_bm25")
PRODUCT = ("popularity", "price_log", "price_vs_candidates", "rating")
SHOPPER = ("shopper_item", "shopper_category", "shopper_brand", "shopper_price_fit")
BUILT_IN = RETRIEVAL + tuple(f"match_{n}" for n in MATCH_NAMES) + TEXT + PRODUCT + SHOPPER
HOOKED_BUILT_INS = ("bm25", "vector", "popularity")  # the hook's own built-ins: columns here already

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d+")
# applied to lower-case text only (no IGNORECASE: case-insensitive matching is ten times slower)
_DIMENSION = re.compile(r"(\d)\s*(?:x|by)\s*(\d)")
# a plural ``s`` ending a word of four or more characters, not ``ss``: the light stemmer of
# :func:`tokens` as one substitution (the literal ``s`` first, so the engine jumps from s to s)
_PLURAL = re.compile(r"s(?<=[^\W_]{2}[^\W_s]s)(?![^\W_])", re.UNICODE)
# a size: a number (``2``, ``1.5``, ``1/2``, ``2-1/2``) and its unit, however written: ``2 in.``,
# ``2in``, ``2"`` and ``2-inch`` are all ``2in``; ``20v`` and ``20-Volt`` are ``20v``
_UNITS = {"in": "in", "inch": "in", "inche": "in", '"': "in", "''": "in", "ft": "ft", "foot": "ft", "feet": "ft",
          "'": "ft", "gal": "gal", "gallon": "gal", "v": "v", "volt": "v", "amp": "a", "a": "a", "w": "w",
          "watt": "w", "lb": "lb", "pound": "lb", "oz": "oz", "ounce": "oz", "mm": "mm", "cm": "cm", "qt": "qt",
          "quart": "qt", "btu": "btu", "psi": "psi", "ah": "ah", "gpm": "gpm", "cu": "cu", "sq": "sq"}
_SIZE = re.compile(r"(?<![\d.])(\d+(?:-\d+/\d+|/\d+|\.\d+)?)\s*-?\s*(inches|inche|inch|in|feet|foot|ft|gallons|gallon|gal|"
                   r"volts|volt|v|amps|amp|ah|a|watts|watt|w|pounds|pound|lbs|lb|ounces|ounce|oz|mm|cm|quarts|quart|qt|"
                   r"btu|psi|gpm|cu|sq|''|\"|')(?![^\W_])")
NAN = float("nan")
# how many distinct texts (titles, brands, colours) a process keeps tokenised: a catalogue's
# busy products recur across queries, and tokenising is most of the features' cost. The words are
# interned, so a title costs about 300 bytes (214 measured over Home Depot's 53,475 titles, plus
# its key): 30 MiB a process at most. At 20,000 a no-repeat run of 300 queries (30,000 candidate
# titles) tokenised nearly every title again.
WORDS_CACHE_SIZE = 100_000


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, ``2 x 6`` joined as ``2x6`` and plural ``s`` dropped (a light stemmer).

    >>> tokens("Simpson 2 x 6 Brackets, 18-Volt")
    ['simpson', '2x6', 'bracket', '18', 'volt']
    """
    return _TOKEN.findall(_PLURAL.sub("", _DIMENSION.sub(r"\1x\2", (text or "").lower())))


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def words(text: str) -> tuple[str, ...]:
    """:func:`tokens` of a product's text, kept for the next query that has the product (read only).

    >>> words("Galvanized Steel Brackets")
    ('galvanized', 'steel', 'bracket')
    """
    return tuple(map(sys.intern, tokens(text)))


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def sizes(text: str) -> frozenset[str]:
    """The sizes a text names, one spelling each (number and unit), kept like :func:`words`.

    >>> sorted(sizes('Simpson 2 in. x 6 in. Hanger, 3/4" pipe, 20-Volt, 2-1/2 ft'))
    ['2-1/2ft', '20v', '2in', '3/4in', '6in']
    """
    out = set()
    for number, unit in _SIZE.findall((text or "").lower()):
        unit = unit[:-1] if len(unit) > 2 and unit.endswith("s") else unit
        out.add(number + _UNITS[unit])
    return frozenset(out)


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
        """The columns ``names`` in that order (a model's feature list), a C-contiguous float64
        matrix; unknown names are NaN."""
        index = {n: j for j, n in enumerate(self.names)}
        if all(n in index for n in names):
            return np.ascontiguousarray(self.matrix[:, [index[n] for n in names]], dtype=np.float64)
        out = np.full((len(self.ids), len(names)), np.nan, dtype=np.float64)
        for k, n in enumerate(names):
            if n in index:
                out[:, k] = self.matrix[:, index[n]]
        return out

    def row(self, i: int) -> dict[str, float | None]:
        """One candidate's features by name (None where missing), for ``explain``."""
        return {n: (None if math.isnan(v) else round(float(v), 6)) for n, v in zip(self.names, self.matrix[i])}


def _ranks(ids: list[str], scores: dict[str, float]) -> dict[str, int]:
    order = sorted(scores, key=scores.__getitem__, reverse=True)  # ties keep their order, as with -score
    return {d: r for r, d in enumerate(order, 1)}


def _share(wanted: list[str], have: set[str]) -> float:
    return sum(t in have for t in wanted) / len(wanted) if wanted else NAN


def _named_share(value, q_set: set[str]) -> float:
    """Share of an attribute value's words (a brand, a colour) that the query names; NaN without one."""
    if not isinstance(value, str) or not value:
        return NAN
    named = words(value)
    return len([w for w in named if w in q_set]) / len(named) if named else NAN


def text_columns(query_terms: list[str], titles: list, sources: list[dict],
                 rarity: dict[str, float] | None = None, rarity_from_candidates: bool = False,
                 query_text: str | None = None, title_stats: TitleStats | None = None,
                 prepared: TitleTerms | None = None) -> np.ndarray:
    """The :data:`TEXT` columns of many candidates at once (pure): ``titles[i]`` the tokens of
    candidate ``i``'s title, ``sources[i]`` its source fields.

    ``rarity``: each query term's weight in ``rare_terms_share`` (default 1); with
    ``rarity_from_candidates``, 1 minus the share of these candidates whose title has the term.
    ``query_text``: the query as typed, for its sizes (default: the terms joined).
    ``title_stats``: the catalogue's title statistics, for ``title_bm25`` (NaN without them).
    ``prepared``: the terms against the titles (``title_matches.TitleTerms``), when the caller has it.
    Each title is a set once; a query term is looked up in every title, prefixes are found once
    over the titles' vocabulary, so the cost is a few set operations per candidate.
    """
    n, k = len(titles), len(query_terms)
    out = np.full((n, len(TEXT)), np.nan)
    q_set = set(query_terms)
    numbered = [j for j, t in enumerate(query_terms) if _DIGITS.search(t)]
    out[:, 4], out[:, 9] = float(len(numbered)), float(k)
    out[:, 8] = [len(t) for t in titles]
    attribute_values = []  # brand, colour, material of each candidate
    for col, key in ((5, "brand"), (6, "colour"), (7, "material")):
        values = list(map(dict.get, sources, repeat(key)))
        share = {v: _named_share(v, q_set) for v in set(values) if isinstance(v, str)}  # candidates share a few
        out[:, col] = list(map(share.get, values, repeat(NAN)))
        attribute_values.append(values)
    if not n or not k:
        return out
    prepared = prepared or TitleTerms.of(query_terms, titles)
    sets, hit, initials = prepared.sets, prepared.hit, prepared.initials
    out[:, 0] = hit.sum(axis=1) / k
    prefix = np.zeros((n, k), dtype=bool)
    for j, t in enumerate(query_terms):
        near = {w for w in initials.get(t[0], ()) if w.startswith(t) or t.startswith(w)} if len(t) >= 3 else None
        if near:
            prefix[:, j] = ~np.fromiter(map(near.isdisjoint, sets), dtype=bool, count=n)
    out[:, 1] = prefix.sum(axis=1) / k
    if numbered:
        wanted = [d for j in numbered for d in _DIGITS.findall(query_terms[j])]
        numbers = list(map(_numbers, map(tuple, titles)))  # tuple() of a tuple is the tuple itself
        out[:, 2] = [sum(map(have.__contains__, wanted)) / len(wanted) for have in numbers]
        out[:, 3] = hit[:, numbered].sum(axis=1) / len(numbered)
    out[:, 10], out[:, 11] = hit[:, k - 1], hit[:, 0]
    if rarity_from_candidates:
        share = hit.sum(axis=0) / n
        rarity = {t: 1.0 - float(share[j]) for j, t in enumerate(query_terms)}
    weights = [(rarity or {}).get(t, 1.0) for t in query_terms]
    total = sum(weights)
    if total > 0:
        # a running sum adds the weights in the query's order, as a sum over the terms would
        out[:, 12] = np.cumsum(hit * np.asarray(weights), axis=1)[:, -1] / total
    _coverage_columns(out, query_terms, titles, prepared, sources, query_text,
                      list(map(_attribute_words, *attribute_values)))
    if title_stats is not None:
        out[:, 18] = title_bm25(query_terms, titles, title_stats, hit)
    return out


def prepare_product(src: dict) -> None:
    """Put one product's text into this process's caches: its title's words, sizes and digit runs,
    its brand / colour / material words (what :func:`feature_table` looks up for a candidate)."""
    title = src.get("title") or ""
    _numbers(words(title))
    sizes(title)
    _attribute_set(src)


def _attribute_set(src: dict) -> frozenset[str]:
    return _attribute_words(src.get("brand"), src.get("colour"), src.get("material"))


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def _attribute_words(*values) -> frozenset[str]:
    """The words of a product's brand, colour and material (those that are text), kept like :func:`words`."""
    return frozenset(w for v in values if isinstance(v, str) and v for w in words(v))


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def _numbers(title: tuple[str, ...]) -> frozenset[str]:
    """The digit runs of a title's tokens, kept like :func:`words`."""
    return frozenset(_DIGITS.findall(" ".join(title)))


def _coverage_columns(out: np.ndarray, query_terms: list[str], titles: list, prepared: TitleTerms,
                      sources: list[dict], query_text: str | None, attributes: list[frozenset[str]]) -> None:
    """Columns 13-17 of :data:`TEXT`: sizes named alike (``2 in.`` = ``2"``) and a size that
    contradicts the query's, query terms in the title or the brand / colour / material
    (``attributes``: each candidate's words of those), query word pairs in the title in order, the
    title's words that the query names."""
    k = len(query_terms)
    wanted = sizes(query_text if query_text is not None else " ".join(query_terms))
    if wanted:
        units = {}
        for size in wanted:
            units.setdefault(size.lstrip("0123456789./-"), set()).add(size)
        shared, conflict = [], []
        for src in sources:
            have = sizes(src.get("title") or "")
            shared.append(len(wanted & have) / len(wanted))
            conflict.append(float(any(not (same & have) and any(h.lstrip("0123456789./-") == unit for h in have)
                                      for unit, same in units.items())))
        out[:, 13], out[:, 14] = shared, conflict
    in_attributes = np.array([list(map(operator.contains, attributes, repeat(t))) for t in query_terms],
                             dtype=bool).reshape(k, len(sources)).T
    out[:, 15] = (prepared.hit | in_attributes).sum(axis=1) / k
    if k > 1:
        out[:, 16] = pairs_in_order_share(titles, query_terms, prepared.present)
    out[:, 17] = named_words_share(titles, query_terms, prepared.present, prepared.sets)


def text_features(query_terms: list[str], source: dict, rarity: dict[str, float] | None = None,
                  title: list[str] | None = None) -> tuple[float, ...]:
    """The :data:`TEXT` features of one candidate (pure; :func:`text_columns` of a list of one);
    ``rarity``: each query term's weight (1 minus the share of the query's candidates whose title
    has it), default 1; ``title``: the title's tokens when the caller has them already.

    ``20v`` is not a title word, but a prefix of one (``20``), and its number is in the title:

    >>> text_features(tokens("dewalt 20v drill"), {"title": "DEWALT 20-Volt Drill", "brand": "DEWALT"})[:4]
    (0.6666666666666666, 1.0, 1.0, 0.0)
    """
    title = tokens(source.get("title") or "") if title is None else title
    return tuple(float(v) for v in text_columns(query_terms, [title], [source], rarity)[0])


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


def _retrieval_columns(ids: list[str], fused: list[float], bm25: dict[str, float], knn: dict[str, float]) -> np.ndarray:
    """The :data:`RETRIEVAL` columns: scores by id (NaN where a list missed the candidate), ranks, shares."""
    bm25_ranks, knn_ranks = _ranks(ids, bm25), _ranks(ids, knn)
    best = max(bm25.values(), default=0.0) or 1.0
    closest = max(knn.values(), default=NAN)
    nan = repeat(NAN)
    b = np.array(list(map(bm25.get, ids, nan)), dtype=np.float64)
    v = np.array(list(map(knn.get, ids, nan)), dtype=np.float64)
    return np.column_stack([b, list(map(bm25_ranks.get, ids, nan)), b / best, 2.0 * v - 1.0,
                            list(map(knn_ranks.get, ids, nan)), 2.0 * (closest - v), fused,
                            np.arange(1, len(ids) + 1, dtype=np.float64)])


def _product_columns(sources: list[dict]) -> np.ndarray:
    """The :data:`PRODUCT` columns: popularity, log price, log of price over the candidates' median, rating."""
    out = np.full((len(sources), len(PRODUCT)), np.nan)
    out[:, 0] = np.array(list(map(dict.get, sources, repeat("popularity_norm"))), dtype=np.float64)  # None: NaN
    out[:, 3] = np.array(list(map(dict.get, sources, repeat("rating_norm"))), dtype=np.float64)
    prices = list(map(dict.get, sources, repeat("price")))
    if any(p is not None for p in prices):
        known = [p for p in prices if p is not None and p > 0]
        median = float(np.median(known)) if known else None
        out[:, 1] = [math.log1p(p) if p is not None and p >= 0 else NAN for p in prices]
        out[:, 2] = [math.log(p / median) if p and median else NAN for p in prices]
    return out


def feature_table(text: str, ranked: list[tuple[str, float]], sources: dict[str, dict], bm25: dict[str, float],
                  knn: dict[str, float], profile: dict | None = None,
                  title_stats: TitleStats | None = None) -> FeatureTable:
    """Every feature of the candidates ``ranked`` (fused order, best first) of the query ``text``.

    ``bm25`` and ``knn`` are the retrieval scores by id (the k-NN score is Lucene's
    ``(1 + cosine) / 2``, turned back into the cosine). Columns are built over all candidates at
    once; a title is tokenised once per process (:func:`words`). ``title_stats``: the
    catalogue's title statistics the ranker was trained with (``title_bm25``).
    """
    ids = [d for d, _ in ranked]
    srcs = [sources.get(d, {}) for d in ids]
    plugins = _plugin_features()
    names = list(BUILT_IN) + [n for n, _ in plugins]
    m = np.full((len(ids), len(names)), np.nan)
    if not ids:
        return FeatureTable(ids, names, m)
    titles = list(map(words, map(dict.get, srcs, repeat("title"))))  # words(None) is () like words("")
    t0 = len(RETRIEVAL) + len(MATCH_NAMES)
    p0 = t0 + len(TEXT)
    s0 = p0 + len(PRODUCT)
    m[:, :len(RETRIEVAL)] = _retrieval_columns(ids, [f for _, f in ranked], bm25, knn)
    terms = tokens(text)
    prepared = TitleTerms.of(terms, titles)
    m[:, len(RETRIEVAL):t0] = match_columns(terms, titles, prepared)
    m[:, t0:p0] = text_columns(terms, titles, srcs, rarity_from_candidates=True, query_text=text,
                               title_stats=title_stats, prepared=prepared)
    m[:, p0:s0] = _product_columns(srcs)
    m[:, s0:s0 + len(SHOPPER)] = shopper_features(profile, sources, ids)
    for j, (_, feature) in enumerate(plugins, len(BUILT_IN)):
        for i, (d, fused) in enumerate(ranked):
            value = feature({"id": d, "score": fused, "bm25": bm25.get(d), "vector": knn.get(d), "source": srcs[i]})
            m[i, j] = NAN if value is None else float(value)
    return FeatureTable(ids, names, m)
