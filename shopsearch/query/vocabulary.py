"""Word ids of a process: the title features' words as integers, so a query's candidates are one array.

The learned ranker's title features (``title_matches.py``) were set operations on a hundred
titles' word tuples per query: a few thousand Python objects touched a query, and
``feature_table`` took 2.1 ms inside the ranker's stage (1.4 ms run again at once on the same
candidates). Here each word has an id, a title is a small ``int32`` array of ids (kept by
``features.title_ids``), and a query's candidates are one concatenated array that numpy reads
in a few dozen operations: the same numbers, 1.5-1.8 ms inside the stage (docs/ARCHITECTURE.md).

Ids are given in order of first sight and never change or go: a word costs its id, its first
letter, its length and whether it has a digit (``initial``, ``length``, ``digits``: arrays by
id, what the fuzzy, prefix and number features filter on). A catalogue's titles have tens of
thousands of distinct words (Home Depot's 53,475 distinct titles: 17,749 after ``features.tokens``);
tens of millions of products, a few million, about 100 bytes each. One :data:`VOCABULARY` serves
a process; new words are added under a lock, so the proxy's threads may share it.

>>> v = Vocabulary()
>>> v.ids(["metal", "bracket", "metal"]).tolist(), v.id("bracket"), v.id("shelf")
([0, 1, 0], 1, -1)
>>> v.words[1], v.columns()[1][:2].tolist()
('bracket', [5, 7])
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

_START = 1024  # ids the arrays hold before they first grow (doubling)


class Vocabulary:
    """Words and their ids; ``words[i]`` is the word of id ``i``."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.words: list[str] = []
        self._lock = threading.Lock()
        self._initial = np.zeros(_START, dtype=np.int32)
        self._length = np.zeros(_START, dtype=np.int32)
        self._digits = np.zeros(_START, dtype=bool)

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        """The word's id; -1 for a word never seen (a query term no title has)."""
        return self._ids.get(word, -1)

    def ids(self, words: Sequence[str]) -> np.ndarray:
        """The ids of ``words`` (``int32``), new words added."""
        get = self._ids.get
        out = [get(w) for w in words]
        if None in out:
            with self._lock:
                out = [self._ids.get(w) if i is None else i for w, i in zip(words, out)]
                out = [self._add(w) if i is None else i for w, i in zip(words, out)]
        return np.array(out, dtype=np.int32)

    def _add(self, word: str) -> int:
        """A new word's id (the caller holds the lock): its columns are written before the id is published."""
        known = self._ids.get(word)
        if known is not None:
            return known
        i = len(self.words)
        if i == len(self._initial):
            self._initial, self._length, self._digits = (np.concatenate([a, np.zeros_like(a)])
                                                         for a in (self._initial, self._length, self._digits))
        self._initial[i] = ord(word[0]) if word else 0
        self._length[i] = len(word)
        self._digits[i] = any(c.isdecimal() for c in word)  # what the regular expression ``\d`` finds
        self.words.append(word)
        self._ids[word] = i
        return i

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(initial, length, digits)`` by id: each word's first letter (its code point), its
        length and whether it has a digit. Read them after the ids they are indexed with were
        given: an array replaced as it grows still holds every id given before."""
        return self._initial, self._length, self._digits


VOCABULARY = Vocabulary()
