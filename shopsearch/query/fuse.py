"""Fusion: one ranked candidate list from the retrieved lists, then the post-fusion blends.

Pure functions on ``(id, score)`` lists. A shopper search runs two retrievals over the same
filters, BM25 and k-NN, then fuses them by min-max normalising each list's scores and mixing
them with the vector weight ``w``::

    fused(d) = (1 - w) * minmax(bm25)(d) + w * minmax(knn)(d)      (missing from a list: 0)

or by weighted reciprocal rank fusion (:func:`fuse_rrf`). After fusion come a browse query's
popularity blend (:func:`blend_browse`), the popularity boost (:func:`add_popularity`) and the
cross-encoder mix of the re-ranked head (:func:`blend_rerank`).

>>> fuse_minmax({"a": 10.0, "b": 5.0}, {"b": 0.9, "c": 0.7}, 0.5)
[('a', 0.5), ('b', 0.5), ('c', 0.0)]
"""

from __future__ import annotations

Ranked = list[tuple[str, float]]


def minmax(scores: dict[str, float]) -> dict[str, float]:
    """Scores scaled to [0, 1]; a single score (or all equal) becomes 1.

    >>> minmax({"a": 2.0, "b": 4.0, "c": 3.0})
    {'a': 0.0, 'b': 1.0, 'c': 0.5}
    >>> minmax({"a": 7.0})
    {'a': 1.0}
    """
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in scores.items()}


def fuse_minmax(bm25: dict[str, float], knn: dict[str, float], vector_weight: float) -> Ranked:
    """Weighted min-max fusion, best first; ties broken by id for determinism."""
    a, b = minmax(bm25), minmax(knn)
    fused = {d: (1 - vector_weight) * a.get(d, 0.0) + vector_weight * b.get(d, 0.0) for d in set(a) | set(b)}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse_rrf(bm25: list[str], knn: list[str], vector_weight: float = 0.5, k: int = 60) -> Ranked:
    """Weighted reciprocal rank fusion of two ranked id lists, best first.

    >>> fuse_rrf(["a", "b"], ["b", "c"], 0.5, k=0)[0][0]
    'b'
    """
    scores: dict[str, float] = {}
    for weight, ranked in ((1 - vector_weight), bm25), (vector_weight, knn):
        for rank, d in enumerate(ranked, start=1):
            scores[d] = scores.get(d, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def rank(method: str, bm25: Ranked, knn: Ranked, vector_weight: float, rrf_k: int = 60) -> Ranked:
    """One ranked list from the two candidate lists: ``dense`` (k-NN alone), ``minmax`` or ``rrf``.

    Without k-NN candidates (a SKU query, or a degraded search) the BM25 list is the answer.

    >>> rank("minmax", [("a", 3.0), ("b", 1.0)], [], 0.5)
    [('a', 3.0), ('b', 1.0)]
    >>> rank("dense", [("a", 3.0)], [("c", 0.9)], 0.5)
    [('c', 0.9)]
    """
    if not knn:
        return list(bm25)
    if method == "dense":
        return list(knn)
    if method == "rrf":
        return fuse_rrf([d for d, _ in bm25], [d for d, _ in knn], vector_weight, rrf_k)
    return fuse_minmax(dict(bm25), dict(knn), vector_weight)


def blend_browse(popularity: dict[str, float], text: Ranked, text_weight: float) -> Ranked:
    """A browse query's ranking: ``(1 - t) * popularity_norm + t * fused text score``, best first.

    >>> blend_browse({"a": 1.0, "b": 0.2}, [("b", 1.0)], 0.1)
    [('a', 0.9), ('b', 0.28)]
    """
    fused = dict(text)
    scores = {d: (1 - text_weight) * popularity.get(d, 0.0) + text_weight * fused.get(d, 0.0)
              for d in set(popularity) | set(fused)}
    return sorted(((d, round(v, 9)) for d, v in scores.items()), key=lambda kv: (-kv[1], kv[0]))


def cut_keeping(ranked: Ranked, depth: int, keep: set[str]) -> Ranked:
    """The first ``depth`` candidates, plus those past the cut whose id is in ``keep``, in order.

    >>> cut_keeping([("a", 3), ("b", 2), ("c", 1)], 1, {"c"})
    [('a', 3), ('c', 1)]
    """
    return ranked[:depth] + [(d, v) for d, v in ranked[depth:] if d in keep]


def add_popularity(ranked: Ranked, sources: dict[str, dict], weight: float) -> Ranked:
    """Fused scores plus ``weight * popularity_norm`` (missing popularity adds nothing), best first.

    >>> [(d, round(s, 2)) for d, s in add_popularity([("a", 0.5), ("b", 0.45)], {"b": {"popularity_norm": 1.0}}, 0.1)]
    [('b', 0.55), ('a', 0.5)]
    """
    popular = {d: float((sources.get(d) or {}).get("popularity_norm") or 0.0) for d, _ in ranked}
    if weight <= 0 or not any(popular.values()):
        return ranked  # nothing to add: the fused order stays exactly as it was
    scored = [(d, s + weight * popular[d]) for d, s in ranked]
    return sorted(scored, key=lambda kv: (-kv[1], kv[0]))


def blend_rerank(ranked: Ranked, cross: list[float], weight: float) -> Ranked:
    """The head that ``cross`` scores (one cross-encoder score per candidate, in order) re-ordered
    by ``(1 - w) * fused + w * cross-encoder``.

    Both scores are min-max scaled within the head; the mixed score is spread over the head's
    fused range (so a later boost still means the same); the rest keep their place after it.
    Equal mixed scores keep the fused order (a stable sort).

    >>> blend_rerank([("a", 0.9), ("b", 0.5), ("c", 0.1)], [0.1, 0.8], 1.0)
    [('b', 0.9), ('a', 0.5), ('c', 0.1)]
    """
    head = ranked[:len(cross)]
    ce = {d: v for (d, _), v in zip(head, cross)}
    fused_part, ce_part = minmax(dict(head)), minmax(ce)
    mixed = {d: (1 - weight) * fused_part[d] + weight * ce_part[d] for d, _ in head}
    ordered = sorted(head, key=lambda kv: -mixed[kv[0]])
    lo, hi = min(v for _, v in head), max(v for _, v in head)
    return [(d, lo + (hi - lo) * mixed[d]) for d, _ in ordered] + ranked[len(head):]
