"""Search-quality metrics: plain functions on ranked ids, judgments and numbers.

A *ranking* is the list of product ids a strategy returned, best first. *Judgments* map a
query's rated product ids to a human relevance in 1..3 (Home Depot: 1 irrelevant, 3 exact).

Choices made once here, so every caller scores alike:

- **Gain** is ``relevance - 1`` (linear: 1 -> 0, 3 -> 2); an unrated product has gain 0.
  DCG discounts rank ``r`` (1-based) by ``log2(r + 1)``.
- **Duplicates** in a ranking count once, at their first position (otherwise a strategy could
  score above 1 by repeating a good product).
- **Undefined is None, not 0.** A metric that cannot be computed for a query returns ``None``
  so that the caller leaves the query out of that metric's average:

  * nDCG and condensed nDCG: ``None`` when the ideal DCG is 0 (every judged product rated 1);
  * recall and reciprocal rank: ``None`` when the query has no positive (no product rated
    ``>= threshold``, 2.33 by default: at least two of three raters said "relevant").

  A query with positives but none of them returned scores 0, as it should.
- **Percentiles** interpolate linearly between order statistics (numpy's default).
- **Ranks with ties** are averaged (the mid-rank), for AUC and Spearman.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

POSITIVE = 2.33  # relevance at or above which a product counts as relevant


def _unique(ranked: Iterable) -> list:
    """Ids in order, each kept at its first position only."""
    seen: set = set()
    out = []
    for pid in ranked:
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
    return out


def _dcg(gains: Sequence[float]) -> float:
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(gains)))


def _gain(relevance: float) -> float:
    return max(float(relevance) - 1.0, 0.0)


def ndcg_at_k(ranked: Sequence, judgments: Mapping, k: int = 10) -> float | None:
    """nDCG@k with gain ``relevance - 1`` and unrated products at gain 0.

    The ideal DCG sorts all of the query's judged gains, highest first, and cuts at ``k``.
    Returns ``None`` when that ideal is 0 (nothing to find).

    >>> ndcg_at_k(["a", "b"], {"a": 3, "b": 2})
    1.0
    >>> round(ndcg_at_k(["b", "a"], {"a": 3, "b": 2}), 4)   # (1 + 2/log2 3) / (2 + 1/log2 3)
    0.8597
    >>> ndcg_at_k(["x"], {"a": 1}) is None
    True
    """
    ideal = _dcg(sorted((_gain(r) for r in judgments.values()), reverse=True)[:k])
    if ideal <= 0:
        return None
    gains = [_gain(judgments[p]) if p in judgments else 0.0 for p in _unique(ranked)[:k]]
    return _dcg(gains) / ideal


def condensed_ndcg_at_k(ranked: Sequence, judgments: Mapping, k: int = 10) -> float | None:
    """nDCG@k over the rated products only, in the order they were ranked (Sakai 2007).

    Unrated products are dropped before the cut at ``k``, so a strategy is not punished for
    surfacing products nobody judged. ``None`` under the same rule as :func:`ndcg_at_k`.

    >>> condensed_ndcg_at_k(["unrated", "a"], {"a": 3})
    1.0
    """
    return ndcg_at_k([p for p in ranked if p in judgments], judgments, k)


def _positives(judgments: Mapping, threshold: float) -> set:
    return {p for p, r in judgments.items() if r >= threshold}


def recall_at_k(ranked: Sequence, judgments: Mapping, k: int = 100,
                threshold: float = POSITIVE) -> float | None:
    """Share of the query's positives (rated ``>= threshold``) found in the top ``k``.

    ``None`` when the query has no positive.

    >>> recall_at_k(["a", "x", "b"], {"a": 3, "b": 2.5, "c": 2.67, "d": 1})
    0.6666666666666666
    >>> recall_at_k(["a"], {"a": 2}) is None
    True
    """
    positives = _positives(judgments, threshold)
    if not positives:
        return None
    return len(positives.intersection(_unique(ranked)[:k])) / len(positives)


def reciprocal_rank(ranked: Sequence, judgments: Mapping, threshold: float = POSITIVE) -> float | None:
    """1 / rank of the first positive in the whole returned list; 0 if none was returned.

    ``None`` when the query has no positive (it is left out of MRR).

    >>> reciprocal_rank(["x", "y", "a"], {"a": 3})
    0.3333333333333333
    >>> reciprocal_rank(["x"], {"a": 3})
    0.0
    """
    positives = _positives(judgments, threshold)
    if not positives:
        return None
    for rank, pid in enumerate(_unique(ranked), start=1):
        if pid in positives:
            return 1.0 / rank
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation; NaN for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30, 40, 50], 95)
    48.0
    """
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def bootstrap_ratio(per_query_a: Sequence[float], per_query_b: Sequence[float], n: int = 2000,
                    seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` with a paired percentile-bootstrap confidence interval.

    ``a[i]`` and ``b[i]`` must score the same query. Each of ``n`` resamples draws queries with
    replacement and takes the ratio of the two means over the same draw; the interval is the
    central ``confidence`` share of those ratios. The same ``seed`` gives the same interval.
    Resamples whose ``b`` mean is 0 are skipped; NaN where nothing is defined (no queries, or
    ``b`` all 0).

    >>> bootstrap_ratio([1.0, 2.0], [1.0, 2.0])
    (1.0, 1.0, 1.0)
    >>> bootstrap_ratio([2.0, 4.0], [1.0, 2.0])
    (2.0, 2.0, 2.0)
    """
    a = np.asarray(per_query_a, dtype=float)
    b = np.asarray(per_query_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d lengths, got {a.shape} and {b.shape}")
    nan = float("nan")
    if a.size == 0 or b.mean() == 0:
        return (nan, nan, nan)
    ratio = float(a.mean() / b.mean())
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, n, 256):  # chunks keep memory flat for thousands of queries
        idx = rng.integers(0, a.size, size=(min(256, n - start), a.size))
        num, den = a[idx].mean(axis=1), b[idx].mean(axis=1)
        ok = den > 0
        ratios.append(num[ok] / den[ok])
    ratios = np.concatenate(ratios)
    if ratios.size == 0:
        return (ratio, nan, nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return (ratio, float(low), float(high))


def bootstrap_mean(values: Sequence[float], n: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(values)`` with a percentile-bootstrap confidence interval (ratio to all ones).

    >>> bootstrap_mean([0.5, 0.5])
    (0.5, 0.5, 0.5)
    """
    return bootstrap_ratio(values, np.ones(len(values)), n=n, seed=seed, confidence=confidence)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span.

    >>> average_ranks([10, 20, 20, 30]).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    x = np.asarray(values, dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first copy
    return (first + (counts + 1) / 2)[inverse]


def auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting one half (Mann-Whitney U / n+n-).

    NaN when either side is empty.

    >>> auc([3, 4], [1, 2])
    1.0
    >>> auc([1], [1])
    0.5
    >>> auc([2, 1], [1, 0])   # pairs: 2>1, 2>0, 1=1 (half), 1>0 -> 3.5 / 4
    0.875
    """
    pos = np.asarray(scores_pos, dtype=float)
    neg = np.asarray(scores_neg, dtype=float)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    ranks = average_ranks(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks; NaN if either side is constant.

    >>> spearman([1, 2, 3], [10, 20, 30])
    1.0
    >>> spearman([1, 2, 3], [3, 2, 1])
    -1.0
    """
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    if denom == 0:
        return float("nan")
    # rounded so that a perfect (reversed) order reads exactly 1.0 (-1.0), not 0.9999999999999998
    return float(round((rx * ry).sum() / denom, 12))
