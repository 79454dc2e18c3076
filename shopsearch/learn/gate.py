"""The evaluation gate: does the candidate index beat the live one on held-out judgments?

nDCG@10 of one strategy (``gate_strategy``, default ``hybrid``) on validation judgments (a file
given by the caller, never the training clicks' queries), live index against candidate, both
searched through the same :class:`~shopsearch.query.searcher.Searcher` with the result cache off.
The candidate passes when it beats the live one by ``gate_margin`` (relative). The gate only
decides; the loop records the decision in the registry and rollout moves the alias.

A learned ranker is gated the same way (:func:`compare_ranker`): on the live index, the
strategy shoppers get today (``Searcher.default_strategy``: hybrid, or ``learned`` with the
ranker served now) against ``learned`` with the candidate ranker pinned, on validation queries
that neither trained nor tuned it.

A candidate index with its own ranker (``shopsearch train`` with the encoders:
:func:`compare_candidate`): what shoppers get now on the live index against ``learned`` on the
candidate index with the candidate ranker pinned there (fitted on features of that very index).
"""

from __future__ import annotations

from shopsearch.evaluation.run import evaluate
from shopsearch.query.searcher import Searcher, SearchRequest
from shopsearch.settings import Settings


def gate_decision(live: float, candidate: float, margin: float) -> dict:
    """Whether ``candidate`` nDCG@10 beats ``live`` by the relative ``margin`` (pure).

    >>> gate_decision(0.40, 0.41, 0.01)["decision"], gate_decision(0.40, 0.402, 0.01)["decision"]
    ('promote', 'reject')
    """
    needed = live * (1 + margin)
    return {"decision": "promote" if candidate > needed else "reject", "live_ndcg@10": round(live, 6),
            "candidate_ndcg@10": round(candidate, 6), "needed": round(needed, 6), "margin": margin,
            "ratio": round(candidate / live, 4) if live else None}


def ndcg(searcher: Searcher, catalogue: str, index: str | None, judgments, strategy: str,
         limit_queries: int | None) -> dict:
    """Mean nDCG@10 of ``strategy`` on ``index`` (``None``: the live one) over ``judgments``, and the query count."""

    def search(q: str, s: str) -> list[str]:
        return [h["id"] for h in searcher.search(catalogue, SearchRequest(q=q, size=100, strategy=s), index=index)["hits"]]
    result = evaluate(judgments, [strategy], search, limit_queries=limit_queries)
    return {"ndcg@10": result.mean(strategy, "ndcg@10"), "queries": len(result.queries)}


def compare(client, settings: Settings, catalogue: str, live: str | None, candidate: str, judgments,
            limit_queries: int | None = None) -> dict:
    """The gate's decision for ``candidate`` against ``live``, with the numbers and indices it compared."""
    searcher = Searcher(client, settings.replace(result_cache_seconds=0))
    live_score = ndcg(searcher, catalogue, live, judgments, settings.gate_strategy, limit_queries)
    cand_score = ndcg(searcher, catalogue, candidate, judgments, settings.gate_strategy, limit_queries)
    decision = gate_decision(live_score["ndcg@10"], cand_score["ndcg@10"], settings.gate_margin)
    decision.update(live_index=live, candidate_index=candidate, queries=cand_score["queries"],
                    strategy=settings.gate_strategy)
    return decision


def compare_ranker(client, settings: Settings, catalogue: str, ranker, judgments, limit_queries: int | None = None) -> dict:
    """The gate's decision for a candidate ranker (a ``query.learned.Ranker``) against what shoppers get now."""
    searcher = Searcher(client, settings.replace(result_cache_seconds=0))
    live = searcher.live(catalogue)
    strategy = searcher.default_strategy(live)
    live_score = ndcg(searcher, catalogue, None, judgments, strategy, limit_queries)
    searcher.rankers.pin(live.index, ranker)
    try:
        cand_score = ndcg(searcher, catalogue, None, judgments, "learned", limit_queries)
    finally:
        searcher.rankers.unpin(live.index)
    decision = gate_decision(live_score["ndcg@10"], cand_score["ndcg@10"], settings.gate_margin)
    decision.update(index=live.index, live_strategy=strategy, candidate_strategy="learned",
                    queries=cand_score["queries"])
    return decision


def compare_candidate(client, settings: Settings, catalogue: str, candidate: str, ranker, judgments,
                      limit_queries: int | None = None) -> dict:
    """The gate's decision for a candidate index served with a candidate ranker, against what shoppers get now."""
    searcher = Searcher(client, settings.replace(result_cache_seconds=0))
    live = searcher.live(catalogue)
    strategy = searcher.default_strategy(live)
    live_score = ndcg(searcher, catalogue, None, judgments, strategy, limit_queries)
    searcher.rankers.pin(candidate, ranker)
    try:
        cand_score = ndcg(searcher, catalogue, candidate, judgments, "learned", limit_queries)
    finally:
        searcher.rankers.unpin(candidate)
    decision = gate_decision(live_score["ndcg@10"], cand_score["ndcg@10"], settings.gate_margin)
    decision.update(index=candidate, live_index=live.index, candidate_index=candidate, live_strategy=strategy,
                    candidate_strategy="learned", queries=cand_score["queries"])
    return decision
