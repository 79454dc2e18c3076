"""The relevance metrics agree with trec_eval (through ir-measures) on random rankings.

Our metrics take Home Depot relevances 1..3 with gain ``relevance - 1``; trec_eval takes integer
gains. With integer relevances the two conventions coincide: qrel gain = relevance - 1, and a
positive (relevance >= 2.33) is qrel gain >= 2.
"""

import random

import ir_measures
import pytest
from ir_measures import RR, R, nDCG

from shopsearch.evaluation import metrics


def random_queries(n: int, seed: int):
    rng = random.Random(seed)
    pool = [f"p{i}" for i in range(60)]
    for q in range(n):
        judged = rng.sample(pool, rng.randint(1, 25))
        judgments = {p: rng.choice([1, 2, 3]) for p in judged}
        ranking = rng.sample(pool, rng.randint(0, 40))
        yield f"q{q}", judgments, ranking


def reference(measure, queries):
    qrels = [ir_measures.Qrel(q, p, r - 1) for q, judged, _ in queries for p, r in judged.items()]
    # distinct, decreasing scores: trec_eval orders by score, so the run's order is ours
    run = [ir_measures.ScoredDoc(q, p, float(len(ranking) - i)) for q, _, ranking in queries for i, p in enumerate(ranking)]
    return {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}


QUERIES = list(random_queries(300, seed=7))


@pytest.mark.parametrize("ours,measure", [
    (lambda ranking, judged: metrics.ndcg_at_k(ranking, judged, 10), nDCG @ 10),
    (lambda ranking, judged: metrics.recall_at_k(ranking, judged, 100), R(rel=2) @ 100),
    (lambda ranking, judged: metrics.reciprocal_rank(ranking, judged), RR(rel=2)),
], ids=["nDCG@10", "Recall@100", "MRR"])
def test_each_metric_matches_trec_eval_query_by_query(ours, measure):
    expected = reference(measure, QUERIES)
    compared = 0
    for q, judged, ranking in QUERIES:
        value = ours(ranking, judged)
        if value is None:  # undefined for this query (nothing to find): left out of averages, by design
            continue
        assert value == pytest.approx(expected.get(q, 0.0), abs=1e-9), q
        compared += 1
    assert compared > 200
