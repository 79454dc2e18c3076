"""The title's own BM25 score, from the catalogue's title statistics: one ranking feature, pure.

The BM25 score of the shopper request mixes every searched field (title, brand, category,
colour, material, each boosted) and OpenSearch's analysers; it says little about how well the
*title alone* matches. Named per-field queries said it until #13, at 2.6 ms a query in the fetch
phase. This computes it in Python instead, over the same tokens as the other title features
(``features.words``: lower case, ``2x6`` joined, plural ``s`` dropped), with Lucene's BM25
(``k1`` 1.2, ``b`` 0.75) and the document frequencies of the catalogue's titles.

Those frequencies (:class:`TitleStats`) are counted by ``shopsearch train`` over the index the
ranker is fitted on and saved beside the ranker (``<version>/ranker/title_stats.json``), so the
ranker is served with the statistics it was trained with. A word the statistics lack (a product
added since, or one beyond :data:`MAX_WORDS`) counts as in one title: the rarest kind.

On the 907 tuning queries (Home Depot, never the validation ones) the column raised nDCG@10 of
the ranker from 0.5910 to 0.5938 (mean of four LightGBM seeds; every seed above the old mean).

>>> stats = TitleStats.from_titles([("metal", "bracket"), ("metal", "shelf"), ("wood", "shelf")])
>>> stats.docs, stats.avg_words, stats.df["metal"]
(3, 2.0, 2)
>>> title_bm25(["metal", "bracket"], [("metal", "bracket"), ("wood", "shelf")], stats).round(3).tolist()
[1.451, 0.0]
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from shopsearch.files import write_json_atomic

K1, B = 1.2, 0.75  # Lucene's (and OpenSearch's) BM25 defaults
# the most frequent title words kept: a word beyond them is as rare as a word in one title, so
# only the words with the least weight in a score are left out (a 54,667-product Home Depot
# catalogue has about 30,000 distinct title words; tens of millions of products, a few million)
MAX_WORDS = 500_000
FILE_NAME = "title_stats.json"


@dataclass(frozen=True)
class TitleStats:
    """Document frequencies of a catalogue's title words, its title count and mean title length."""
    docs: int
    avg_words: float
    df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_titles(cls, titles: Iterable[Sequence[str]], max_words: int = MAX_WORDS) -> "TitleStats":
        """Counted over each title's tokens (a title counts a word once); the ``max_words`` most
        frequent kept, in order of frequency, then of the word."""
        df: Counter = Counter()
        docs = length = 0
        for title in titles:
            docs += 1
            length += len(title)
            df.update(set(title))
        kept = dict(sorted(df.items(), key=lambda item: (-item[1], item[0]))[:max_words])  # ties: by word
        return cls(docs, length / docs if docs else 0.0, kept)

    def idf(self, word: str) -> float:
        """Lucene's BM25 idf, ``ln(1 + (N - n + 0.5) / (n + 0.5))``; a word not counted has ``n`` = 1."""
        n = self.df.get(word, 1)
        return math.log(1.0 + (self.docs - n + 0.5) / (n + 0.5))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        write_json_atomic(path, {"docs": self.docs, "avg_words": self.avg_words, "df": self.df})
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "TitleStats | None":
        """The statistics saved in ``directory``; None when there are none (a ranker trained before them)."""
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(int(data["docs"]), float(data["avg_words"]), {str(k): int(v) for k, v in data["df"].items()})


def title_bm25(terms: Sequence[str], titles: Sequence[Sequence[str]], stats: TitleStats,
               hit: np.ndarray | None = None) -> np.ndarray:
    """Each title's BM25 score for the query ``terms`` (a repeated query term counts each time).

    ``hit[i, j]``: whether title ``i`` has term ``j`` (computed when not given); term
    frequencies are counted only where it does.
    """
    n = len(titles)
    if not n or not terms or stats.docs == 0:
        return np.zeros(n)
    if hit is None:
        sets = [set(t) for t in titles]
        hit = np.array([[t in have for t in terms] for have in sets], dtype=bool)
    idf = np.array([stats.idf(t) for t in terms])
    lengths = np.array([len(t) for t in titles], dtype=np.float64)
    norm = K1 * (1.0 - B + B * lengths / (stats.avg_words or 1.0))
    tf = np.zeros((n, len(terms)))
    rows, cols = np.nonzero(hit)
    tf[rows, cols] = [titles[i].count(terms[j]) for i, j in zip(rows.tolist(), cols.tolist())]
    return (idf * tf * (K1 + 1.0) / (tf + norm[:, None])).sum(axis=1)
