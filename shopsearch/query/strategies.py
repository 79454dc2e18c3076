"""The search strategies, registered in one place: each name is a pipeline of stages (``stages.py``).

Every strategy but the ``bm25`` baseline runs retrieve → fuse → browse blend → cut → boosts
→ [re-rank] → personalise; they differ in what they retrieve and how they fuse:

>>> for name in STRATEGIES:
...     print(f"{name}: {PIPELINES[name]}")
bm25: PlainBM25()
dense: Retrieve(bm25, knn) >> Dense() >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Personalise()
hybrid: Retrieve(bm25, knn if vector_weight > 0) >> MinMax(vector_weight) >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Personalise()
hybrid-rrf: Retrieve(bm25, knn if vector_weight > 0) >> RRF(vector_weight, rrf_k) >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Personalise()
hybrid-rerank: Retrieve(bm25, knn if vector_weight > 0) >> MinMax(vector_weight) >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> Rerank(cross-encoder, rerank_depth, rerank_weight) >> Personalise()
learned: Retrieve(bm25, knn if vector_weight > 0) >> MinMax(vector_weight) >> BrowseBlend(browse_text_weight) >> Cut(candidate_depth, keep=own) >> Boosts(popularity) >> LearnedRank(ranker, features) >> Personalise()
"""

from __future__ import annotations

from shopsearch.errors import SearchError
from shopsearch.query.learned import LearnedRank
from shopsearch.query.shopper_rank import ShopperRank
from shopsearch.query.stages import (RRF, Boosts, BrowseBlend, Cut, Dense, MinMax, Personalise, Pipeline, PlainBM25,
                                     Rerank, Retrieve)
from shopsearch.settings import Settings

# after fusion, every strategy but the baseline: popularity leads a browse query, the shopper's
# own candidates survive the depth cut, then the boosts
_AFTER_FUSION = BrowseBlend() >> Cut() >> Boosts()

PIPELINES: dict[str, Pipeline] = {
    "bm25": Pipeline((PlainBM25(),)),  # the baseline: the plain query a shop sends without shopsearch
    "dense": Retrieve(knn="always") >> Dense() >> _AFTER_FUSION >> Personalise(),
    "hybrid": Retrieve() >> MinMax() >> _AFTER_FUSION >> Personalise(),
    "hybrid-rrf": Retrieve() >> RRF() >> _AFTER_FUSION >> Personalise(),
    "hybrid-rerank": Retrieve() >> MinMax() >> _AFTER_FUSION >> Rerank() >> Personalise(),
    # the hybrid candidates re-scored by the index's learned ranker (``learned.py``; none: hybrid order)
    "learned": Retrieve() >> MinMax() >> _AFTER_FUSION >> LearnedRank() >> Personalise(),
}
STRATEGIES = tuple(PIPELINES)


def pipeline(name: str, settings: Settings) -> Pipeline:
    """The pipeline that answers strategy ``name`` under ``settings``.

    The ``fusion`` setting chooses the default fusion: with ``rrf``, ``hybrid`` and
    ``hybrid-rerank`` fuse by RRF instead of min-max (``hybrid-rrf`` always does). With
    ``personalise_ranker`` on, the learned shopper ranker takes the place of ``Personalise``
    (which stays its fallback).

    >>> from shopsearch.settings import load_settings
    >>> str(pipeline("hybrid", load_settings({}).replace(fusion="rrf"))).split(" >> ")[1]
    'RRF(vector_weight, rrf_k)'
    >>> str(pipeline("hybrid", load_settings({}).replace(personalise_ranker=True))).split(" >> ")[-1]
    'ShopperRank(shopper-ranker, fallback=Personalise())'
    """
    if name not in PIPELINES:
        raise SearchError(f"unknown strategy {name!r}; one of {', '.join(STRATEGIES)}", field="strategy")
    found = PIPELINES[name]
    if settings.fusion == "rrf":
        found = found.replace(MinMax, RRF())
    return found.replace(Personalise, ShopperRank()) if settings.personalise_ranker else found
