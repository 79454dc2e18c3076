"""Title matches of the learned ranker: does a candidate's title hold the query's terms, all of
them, as a phrase, close together, or within a typo? Pure functions over tokens (``features.tokens``).

They were named queries in the BM25 request until #13; OpenSearch evaluated them for each hit in
the fetch phase (2.6 ms of that request's 4.1 ms on Home Depot), and only BM25 hits had them.
Here every candidate has them, from its title's tokens, for a few set operations each.
The text columns' word pairs in order and the title's words the query names (``features.py``) are
read here too, from the same :class:`TitleTerms`.

>>> match_columns(["metal", "braket"], [("galvanized", "metal", "bracket"), ("metal", "shelf")]).tolist()
[[1.0, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from symspellpy.editdistance import DistanceAlgorithm, EditDistance

MATCH_NAMES = ("title", "title_all", "title_phrase", "title_near", "title_fuzzy")
NEAR_SLOP = 3          # title_near: the query's terms within this many extra positions
FUZZY_PREFIX = 1       # title_fuzzy: letters that must match exactly (typos rarely hit the first)
_EDITS = EditDistance(DistanceAlgorithm.DAMERAU_OSA)   # Lucene's fuzzy counts a transposition as one edit
_DIGITS = re.compile(r"\d+")
CLOSE_CACHE_SIZE = 200_000  # (query term, title word) comparisons a process keeps


def fuzzy_edits(term: str) -> int:
    """How many edits a term may be from a title word (Lucene's ``AUTO``): 0 up to two letters, 1 up to
    five, else 2; 0 for a term with a digit (a size or model number one edit from another is another).

    >>> [fuzzy_edits(t) for t in ("tv", "kombo", "brakets", "2x4", "dw0240")]
    [0, 1, 2, 0, 0]
    """
    if len(term) <= 2 or _DIGITS.search(term):
        return 0
    return 1 if len(term) <= 5 else 2


def close_words(term: str, vocabulary: Iterable[str]) -> set[str]:
    """The words of ``vocabulary`` a typo away from ``term``: within :func:`fuzzy_edits`, the first letter exact.

    >>> sorted(close_words("toliet", {"toilet", "toilets", "outlet"}))
    ['toilet', 'toilets']
    """
    edits = fuzzy_edits(term)
    if not edits:
        return {term} & set(vocabulary)
    head, n = term[:FUZZY_PREFIX], len(term)
    return {w for w in vocabulary if w[:FUZZY_PREFIX] == head and abs(len(w) - n) <= edits
            and _within_edits(term, w, edits)}


@functools.lru_cache(maxsize=CLOSE_CACHE_SIZE)
def _within_edits(term: str, word: str, edits: int) -> bool:
    """symspellpy's OSA distance of two words within ``edits``, kept: a query term meets the same
    title words in query after query, and the comparison costs microseconds in Python."""
    return _EDITS.compare(term, word, edits) >= 0


def _within(title: tuple[str, ...], query_terms: list[str], slop: int) -> bool:
    """Whether some window of ``len(query_terms) + slop`` title positions holds every query term."""
    wanted, width = set(query_terms), len(set(query_terms)) + slop
    for start, w in enumerate(title):
        if w in wanted and wanted <= set(title[start:start + width]):
            return True
    return False


def _phrase(title: tuple[str, ...], query_terms: list[str]) -> bool:
    k = len(query_terms)
    return any(list(title[i:i + k]) == query_terms for i in range(len(title) - k + 1))


@dataclass(frozen=True)
class TitleTerms:
    """A query's terms against its candidates' titles, worked out once for every title feature:
    each title as a set, the titles' words by first letter (:func:`by_initial`, the query terms' letters) and
    ``present[i][j]``, whether title ``i`` has term ``j`` (``hit``: the same as a matrix).

    >>> TitleTerms.of(["metal", "shelf"], [("metal", "bracket"), ("shelf",)]).present
    [[True, False], [False, True]]
    """
    titles: list[tuple[str, ...]]
    sets: list[set[str]]
    initials: dict[str, list[str]]
    present: list[list[bool]]
    hit: np.ndarray

    @classmethod
    def of(cls, query_terms: list[str], titles: list[tuple[str, ...]]) -> "TitleTerms":
        sets = list(map(set, titles))
        # map over C methods: no comprehension frame per title (Python 3.11 gives each one its own)
        present = [list(map(have.__contains__, query_terms)) for have in sets]
        hit = np.array(present, dtype=bool).reshape(len(titles), len(query_terms))
        return cls(titles, sets, by_initial(sets, [t[0] for t in query_terms if t]), present, hit)


def match_columns(query_terms: list[str], titles: list[tuple[str, ...]],
                  prepared: TitleTerms | None = None) -> np.ndarray:
    """The :data:`MATCH_NAMES` columns of many candidates (pure), from their title tokens: any query
    term, all, the phrase, all within :data:`NEAR_SLOP` extra positions, all within a typo.
    ``prepared``: :class:`TitleTerms` of these terms and titles, when the caller has it.

    >>> match_columns(["metal", "shelf"], [("metal", "shelf", "bracket"), ("shelf", "of", "painted", "metal")]).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0, 1.0]]
    """
    if not query_terms or not titles:
        return np.zeros((len(titles), len(MATCH_NAMES)))
    prepared = prepared or TitleTerms.of(query_terms, titles)
    initials = prepared.initials
    close = [close_words(t, initials.get(t[0], ())) | {t} for t in query_terms]
    rows = []
    for title, have, present in zip(titles, prepared.sets, prepared.present):
        every = False not in present
        rows.append((True in present, every, every and _phrase(title, query_terms),
                     every and _within(title, query_terms, NEAR_SLOP), every or not any(map(have.isdisjoint, close))))
    return np.array(rows, dtype=np.float64)


def pairs_in_order_share(titles: list, query_terms: list[str], present: list[list[bool]]) -> list[float]:
    """Share of the query's word pairs that each title has in order (``present[i][j]``: title
    ``i`` has term ``j``). A pair can only be in a title with two of the query's words, so only those are read."""
    pairs = list(zip(query_terms, query_terms[1:]))
    out = [0.0] * len(titles)
    for i, (title, has) in enumerate(zip(titles, present)):
        if has.count(True) < 2:
            continue
        found = sum(map(set(zip(title, title[1:])).__contains__, pairs))
        if found:
            out[i] = found / len(pairs)
    return out


def named_words_share(titles: list, query_terms: list[str], present: list[list[bool]],
                      sets: list[set[str]]) -> list[float]:
    """Share of each title's words that the query names (NaN for an empty title; ``present[i][j]``:
    title ``i`` has term ``j``, so a title without any is 0 unread; ``sets[i]``: title ``i``'s words
    as a set, so a title without a repeated word is counted by intersection)."""
    named_set = set(query_terms)
    named = named_set.__contains__
    out = []
    for i, (title, has) in enumerate(zip(titles, present)):
        if not title:
            out.append(float("nan"))
        elif True in has:
            have = sets[i]
            if len(have) == len(title):
                out.append(len(named_set & have) / len(title))
            else:
                out.append(sum(map(named, title)) / len(title))
        else:
            out.append(0.0)
    return out


def by_initial(sets: list[set[str]], letters: Iterable[str]) -> dict[str, list[str]]:
    """The words of the titles that start with each of ``letters`` (the query terms' first letters):
    a prefix match or a typo (first letter exact) shares it.

    >>> by_initial([{"metal", "mug"}, {"shelf"}], "s")
    {'s': ['shelf']}
    """
    found = set().union(*sets)
    return {c: [w for w in found if w[0] == c] for c in set(letters)}
