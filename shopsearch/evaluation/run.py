"""Offline evaluation: run every judged query through each strategy and score the rankings.

The search itself is passed in as a plain function ``search(query, strategy) -> [product ids]``,
so this module does no I/O beyond reading the judgment and pair files; the CLI binds it to the
catalogue's index.

How queries count (see :mod:`shopsearch.metrics` for the per-query rules):

- Each distinct query text is run once per strategy, in sorted order, query by query (all
  strategies for one query, then the next) so that a drift in cluster load hits every strategy
  alike. Every query run contributes to the latency percentiles.
- nDCG@10 and condensed nDCG@10 average over queries whose ideal DCG is above 0; Recall@100 and
  MRR average over queries with at least one positive (rated >= 2.33). Which queries count
  depends on the judgments only, so every strategy is averaged over the same queries and the
  comparison with ``bm25`` is paired.
- ``queries`` in the JSON is the number of queries scored by nDCG@10 (any query with a positive
  also has an ideal DCG above 0, so this is every query that any metric scores). Per-metric
  counts are in :meth:`EvalResult.counts` and in the Markdown report.
- ``limit_queries=N`` takes the N queries whose SHA-256 text hash is smallest: a stable
  pseudo-random sample (sorted order would pick only queries starting with digits).
- Ratios to ``bm25`` use a paired bootstrap (2,000 resamples, seed 0): deterministic. A ratio
  that cannot be computed (no ``bm25`` run, or ``bm25`` scoring 0) is written as ``null``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from shopsearch.errors import InputError
from shopsearch.evaluation import metrics

METRICS = ("ndcg@10", "condensed_ndcg@10", "recall@100", "mrr")
LATENCY_KEYS = ("p50_ms", "p95_ms")
BASELINE = "bm25"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
KEEP_TOP = 10  # ids kept per query and strategy for error analysis

SCORERS: dict[str, Callable[[Sequence[str], Mapping[str, float]], float | None]] = {
    "ndcg@10": lambda ranked, judged: metrics.ndcg_at_k(ranked, judged, k=10),
    "condensed_ndcg@10": lambda ranked, judged: metrics.condensed_ndcg_at_k(ranked, judged, k=10),
    "recall@100": lambda ranked, judged: metrics.recall_at_k(ranked, judged, k=100),
    "mrr": lambda ranked, judged: metrics.reciprocal_rank(ranked, judged),
}

Judgments = dict[str, dict[str, float]]
Search = Callable[[str, str], Sequence]


def load_judgments(path: str | Path) -> Judgments:
    """Read a ``query<TAB>product_uid<TAB>relevance`` TSV into ``{query: {product id: relevance}}``.

    Query text is kept exactly as written (case and spaces matter: ``"Shoes"`` and
    ``"shoes "`` are two queries); product ids are strings. A repeated (query, product) pair is
    an error, since silently keeping one of two ratings would bias the evaluation.
    """
    judgments: Judgments = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"query", "product_uid", "relevance"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{path}: header lacks {sorted(missing)} (need query, product_uid, relevance)")
        for row in reader:
            query, pid = row["query"], str(row["product_uid"])
            try:
                relevance = float(row["relevance"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{reader.line_num}: relevance {row['relevance']!r} is not a number") from None
            rated = judgments.setdefault(query, {})
            if pid in rated:
                raise InputError(f"{path}:{reader.line_num}: ({query!r}, {pid}) is rated twice")
            rated[pid] = relevance
    return judgments


def _unit_hash(text: str, seed: int | str = "") -> float:
    """A stable number in [0, 1) for a text (the same on every machine and Python run)."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_queries(queries: Iterable[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split queries into ``(part, rest)``, ``part`` holding about ``fraction`` of them.

    A query's side depends on its text and ``seed`` only, never on the other queries, so it
    stays put when the query set grows. Both lists are sorted.

    >>> part, rest = split_queries(["a", "b", "c"], 0.0)
    >>> part, rest
    ([], ['a', 'b', 'c'])
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    part, rest = [], []
    for q in sorted(set(queries)):
        (part if _unit_hash(q, seed) < fraction else rest).append(q)
    return part, rest


def select_queries(queries: Iterable[str], limit: int | None = None) -> list[str]:
    """The queries to run, sorted; with ``limit``, the ``limit`` with the smallest text hash."""
    chosen = sorted(set(queries))
    if limit is not None:
        chosen = sorted(sorted(chosen, key=_unit_hash)[:limit])
    return chosen


@dataclass
class EvalResult:
    """Per-query scores of each strategy, in the order of ``queries``.

    ``scores[strategy][metric][i]`` is ``None`` where the metric is undefined for query ``i``
    (the same positions for every strategy); ``latency_ms[strategy][i]`` is the wall time of
    that query's search call; ``top[strategy][i]`` the first :data:`KEEP_TOP` ids returned.
    """
    queries: list[str]
    strategies: list[str]
    judgments: Judgments
    scores: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    top: dict[str, list[list[str]]] = field(default_factory=dict)

    def scored(self, metric: str) -> list[int]:
        """Indices of the queries that ``metric`` scores (the same for every strategy)."""
        first = self.scores[self.strategies[0]][metric]
        return [i for i, v in enumerate(first) if v is not None]

    def counts(self) -> dict[str, int]:
        """How many queries each metric averages over."""
        return {m: len(self.scored(m)) for m in METRICS}

    def values(self, strategy: str, metric: str) -> list[float]:
        """The defined per-query values of ``metric`` for ``strategy``, in query order."""
        col = self.scores[strategy][metric]
        return [float(col[i]) for i in self.scored(metric)]

    def mean(self, strategy: str, metric: str) -> float:
        """Average of ``metric`` over the queries it scores (NaN if none)."""
        vals = self.values(strategy, metric)
        return float(np.mean(vals)) if vals else float("nan")

    def ratio(self, strategy: str, metric: str, baseline: str = BASELINE) -> tuple[float, float, float]:
        """``mean(strategy) / mean(baseline)`` with its paired 95 % bootstrap interval."""
        if baseline not in self.scores:
            return (float("nan"),) * 3
        return metrics.bootstrap_ratio(self.values(strategy, metric), self.values(baseline, metric),
                                       n=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)

    def deltas(self, strategy: str, baseline: str = BASELINE, metric: str = "ndcg@10") -> list[tuple[str, float]]:
        """``(query, strategy - baseline)`` for every query that ``metric`` scores."""
        a, b = self.scores[strategy][metric], self.scores[baseline][metric]
        return [(self.queries[i], float(a[i]) - float(b[i])) for i in self.scored(metric)]

    def to_json(self, catalogue: str, judgments_path: str | Path) -> dict:
        """The ``--json`` document; undefined numbers (NaN) are written as ``null``.

        Latency lives only under each strategy's ``p50_ms`` / ``p95_ms``
        (:data:`LATENCY_KEYS`), so :func:`without_latency` leaves what must be deterministic.
        """
        strategies = {}
        for s in self.strategies:
            entry = {m: _number(self.mean(s, m)) for m in METRICS}
            entry["p50_ms"] = _number(metrics.percentile(self.latency_ms[s], 50))
            entry["p95_ms"] = _number(metrics.percentile(self.latency_ms[s], 95))
            entry["vs_bm25"] = {m: [_number(x) for x in self.ratio(s, m)] for m in METRICS}
            strategies[s] = entry
        return {"catalogue": catalogue, "judgments": str(judgments_path),
                "queries": len(self.scored("ndcg@10")) if self.strategies else 0,
                "strategies": strategies}


def _number(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def without_latency(doc: dict) -> dict:
    """A copy of a :meth:`EvalResult.to_json` document without the latency keys."""
    out = json.loads(json.dumps(doc))
    for entry in out.get("strategies", {}).values():
        for key in LATENCY_KEYS:
            entry.pop(key, None)
    return out


def evaluate(judgments: Judgments, strategies: Sequence[str], search: Search,
             limit_queries: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run each selected query once per strategy through ``search(query, strategy)`` and score it.

    ``search`` returns product ids best first (any type; compared as strings). ``progress``,
    if given, is called as ``progress(done, total)`` after every search call.
    """
    if not strategies:
        raise InputError("no strategies to evaluate")
    if len(set(strategies)) != len(strategies):
        raise InputError(f"strategies repeat: {list(strategies)}")
    queries = select_queries(judgments, limit_queries)
    result = EvalResult(queries=queries, strategies=list(strategies),
                        judgments={q: dict(judgments[q]) for q in queries})
    for s in strategies:
        result.scores[s] = {m: [] for m in METRICS}
        result.latency_ms[s] = []
        result.top[s] = []
    total, done = len(queries) * len(strategies), 0
    for query in queries:
        judged = {str(p): r for p, r in judgments[query].items()}
        for s in strategies:
            start = time.perf_counter()
            ranked = [str(p) for p in search(query, s)]
            result.latency_ms[s].append((time.perf_counter() - start) * 1000.0)
            for m, score in SCORERS.items():
                result.scores[s][m].append(score(ranked, judged))
            result.top[s].append(ranked[:KEEP_TOP])
            done += 1
            if progress is not None:
                progress(done, total)
    return result


def score_pairs(pairs_path: str | Path, encode: Callable[[list[str]], np.ndarray]) -> dict:
    """How well an encoder orders human-labelled query-title pairs (QBQTC JSON lines).

    Each line holds ``query``, ``title`` and ``label`` (0 poor, 1 somewhat, 2 very relevant).
    The score of a pair is the cosine similarity of ``encode([query])`` and ``encode([title])``.
    Returns the number of pairs, the AUC of label 2 against label 0 (Mann-Whitney, ties half)
    and Spearman's rho between score and label over all pairs.
    """
    queries, titles, labels = [], [], []
    with open(pairs_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                queries.append(row["query"])
                titles.append(row["title"])
                labels.append(int(row["label"]))
    if not labels:
        raise InputError(f"{pairs_path}: no pairs")
    q = np.asarray(encode(queries), dtype=np.float64)
    t = np.asarray(encode(titles), dtype=np.float64)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    scores = (q * t).sum(axis=1)
    lab = np.asarray(labels)
    return {"pairs": len(labels),
            "auc_2_vs_0": _number(metrics.auc(scores[lab == 2], scores[lab == 0])),
            "spearman": _number(metrics.spearman(scores, lab))}
