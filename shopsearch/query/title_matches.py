"""Title matches of the learned ranker: does a candidate's title hold the query's terms, all of
them, as a phrase, close together, or within a typo? Pure functions over tokens (``features.tokens``).

They were named queries in the BM25 request until #13; OpenSearch evaluated them for each hit in
the fetch phase (2.6 ms of that request's 4.1 ms on Home Depot), and only BM25 hits had them.
Here every candidate has them, from its title's tokens: the candidates' titles are one array of
word ids (:class:`TitleTerms`, ``vocabulary.py``) and each column a few numpy operations over it
for the whole query. The text columns' word pairs in order and the title's words the query names
(``features.py``) are read here too, from the same :class:`TitleTerms`.

>>> match_columns(["metal", "braket"], [("galvanized", "metal", "bracket"), ("metal", "shelf")]).tolist()
[[1.0, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from symspellpy.editdistance import DistanceAlgorithm, EditDistance

from shopsearch.query.vocabulary import VOCABULARY, Vocabulary

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


@dataclass(frozen=True, eq=False)
class TitleTerms:
    """A query's terms against its candidates' titles, worked out once for every title feature,
    over the titles' word ids (``vocabulary.py``) laid end to end in one array:

    ``flat[p]`` is the id of word ``p`` of all titles, ``starts[i]`` where title ``i`` begins (its
    length ``lengths[i]``), ``title_of[p]`` the title of word ``p``; ``uniq`` the distinct ids
    and ``inv[p]`` the index of word ``p`` in it; ``eq[p, j]`` whether word ``p`` is term ``j``,
    ``tf[i, j]`` how often title ``i`` has term ``j`` and ``hit`` whether it has it at all.

    >>> t = TitleTerms.of(["metal", "shelf"], [("metal", "bracket"), ("shelf",)])
    >>> t.hit.tolist(), t.lengths.tolist()
    ([[True, False], [False, True]], [2, 1])
    """
    terms: list[str]
    vocabulary: Vocabulary
    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    title_of: np.ndarray
    uniq: np.ndarray
    inv: np.ndarray
    eq: np.ndarray
    tf: np.ndarray
    hit: np.ndarray

    @classmethod
    def of(cls, query_terms: list[str], titles: Iterable[Sequence[str]],
           vocabulary: Vocabulary = VOCABULARY) -> "TitleTerms":
        """From the titles' tokens (their words are given ids)."""
        return cls.of_ids(query_terms, [vocabulary.ids(t) for t in titles], vocabulary)

    @classmethod
    def of_ids(cls, query_terms: list[str], titles: list[np.ndarray],
               vocabulary: Vocabulary = VOCABULARY) -> "TitleTerms":
        """From the titles' word ids (``features.title_ids``), given by ``vocabulary``."""
        n = len(titles)
        lengths = np.fromiter(map(len, titles), dtype=np.int64, count=n)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        flat = np.concatenate(titles) if n else np.zeros(0, dtype=np.int32)
        uniq, inv = np.unique(flat, return_inverse=True)
        term_ids = np.array([vocabulary.id(t) for t in query_terms], dtype=np.int64)
        eq = flat[:, None] == term_ids[None, :]
        tf = per_title(eq, starts)
        return cls(list(query_terms), vocabulary, flat, starts, lengths, np.repeat(np.arange(n), lengths),
                   uniq, inv.reshape(-1), eq, tf, tf > 0)

    @functools.cached_property
    def initials(self) -> np.ndarray:
        """The first letter (code point) of each of :attr:`uniq`."""
        return self.vocabulary.columns()[0][self.uniq]

    @functools.cached_property
    def _uniq_words(self) -> list[str]:
        words = self.vocabulary.words
        return [words[i] for i in self.uniq.tolist()]

    def words_starting(self, letter: str) -> list[tuple[int, str]]:
        """The titles' distinct words that begin with ``letter``: (index in :attr:`uniq`, word)."""
        words = self._uniq_words
        return [(i, words[i]) for i in np.flatnonzero(self.initials == ord(letter)).tolist()]

    def words_with_digits(self) -> list[tuple[int, str]]:
        """The titles' distinct words that have a digit: (index in :attr:`uniq`, word)."""
        words = self._uniq_words
        return [(i, words[i]) for i in np.flatnonzero(self.vocabulary.columns()[2][self.uniq]).tolist()]

    def titles_with(self, chosen: list[list[int]]) -> np.ndarray:
        """``out[i, c]``: whether title ``i`` has one of the words ``chosen[c]`` (indices in :attr:`uniq`)."""
        mask = np.zeros((len(self.uniq), len(chosen)), dtype=bool)
        for c, words in enumerate(chosen):
            mask[words, c] = True
        return per_title(mask[self.inv], self.starts) > 0


def per_title(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (one row per word of the titles laid end to end) over each title's
    words, ``starts`` where each begins: a running sum read at the titles' bounds, so an empty title is 0.

    >>> per_title(np.array([1, 2, 3, 4]), np.array([0, 1, 1, 4])).tolist()
    [1, 0, 9]
    """
    total = np.zeros((len(values) + 1,) + values.shape[1:], dtype=np.int64)
    np.cumsum(values, axis=0, out=total[1:])
    return total[starts[1:]] - total[starts[:-1]]


def _phrase_starts(t: TitleTerms) -> np.ndarray:
    """Whether the query's terms follow in order from each word of the titles, within its title."""
    k, size = len(t.terms), len(t.flat)
    out = np.zeros(size, dtype=bool)
    m = size - k + 1
    if m <= 0:
        return out
    ok = t.title_of[:m] == t.title_of[k - 1:k - 1 + m]
    for j in range(k):
        ok &= t.eq[j:j + m, j]
    out[:m] = ok
    return out


def _window_starts(t: TitleTerms, slop: int) -> np.ndarray:
    """Whether the ``len(set(terms)) + slop`` words of a title from each word hold every query term."""
    distinct = list(dict.fromkeys(t.terms))
    size, width = len(t.flat), len(distinct) + slop
    at = np.arange(size)
    next_at = np.where(t.eq[:, [t.terms.index(u) for u in distinct]], at[:, None], size)
    next_at = np.minimum.accumulate(next_at[::-1], axis=0)[::-1]   # the next word that is each term
    limit = np.minimum(at + width, t.starts[t.title_of + 1])
    return (next_at < limit[:, None]).all(axis=1)


def close_indices(t: TitleTerms) -> list[list[int]]:
    """For each query term, the titles' words a typo away (:func:`close_words`) and the term
    itself, as indices in ``t.uniq``."""
    out = []
    for j, term in enumerate(t.terms):
        found = np.flatnonzero(t.uniq == t.vocabulary.id(term)).tolist()
        if fuzzy_edits(term):
            same_letter = t.words_starting(term[0])
            close = close_words(term, [w for _, w in same_letter])
            found += [i for i, w in same_letter if w in close and w != term]
        out.append(found)
    return out


def match_columns(query_terms: list[str], titles: list[tuple[str, ...]] | None,
                  prepared: TitleTerms | None = None) -> np.ndarray:
    """The :data:`MATCH_NAMES` columns of many candidates (pure), from their title tokens: any query
    term, all, the phrase, all within :data:`NEAR_SLOP` extra positions, all within a typo.
    ``prepared``: :class:`TitleTerms` of these terms and titles, when the caller has it (then
    ``titles`` may be None).

    >>> match_columns(["metal", "shelf"], [("metal", "shelf", "bracket"), ("shelf", "of", "painted", "metal")]).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0, 1.0]]
    """
    t = prepared or TitleTerms.of(query_terms, titles)
    out = np.zeros((len(t.lengths), len(MATCH_NAMES)))
    if not query_terms or not len(t.lengths):
        return out
    every = t.hit.all(axis=1)
    out[:, 0], out[:, 1] = t.hit.any(axis=1), every
    if every.any():
        out[:, 2] = every & (per_title(_phrase_starts(t), t.starts) > 0)
        out[:, 3] = every & (per_title(_window_starts(t, NEAR_SLOP), t.starts) > 0)
    out[:, 4] = every | t.titles_with(close_indices(t)).all(axis=1)
    return out


def pairs_in_order_share(t: TitleTerms) -> np.ndarray:
    """Share of the query's word pairs (in the query's order, a repeated pair counted each time)
    that each title has in order."""
    k = len(t.terms)
    if k < 2 or len(t.flat) < 2:
        return np.zeros(len(t.lengths))
    adjacent = np.zeros((len(t.flat), k - 1), dtype=bool)
    adjacent[:-1] = t.eq[:-1, :-1] & t.eq[1:, 1:] & (t.title_of[:-1] == t.title_of[1:])[:, None]
    return (per_title(adjacent, t.starts) > 0).sum(axis=1) / (k - 1)


def named_words_share(t: TitleTerms) -> np.ndarray:
    """Share of each title's words that the query names (NaN for an empty title)."""
    named = per_title(t.eq.any(axis=1), t.starts)
    out = np.full(len(t.lengths), np.nan)
    np.divide(named, t.lengths, out=out, where=t.lengths > 0)
    return out
