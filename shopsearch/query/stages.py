"""The stages of a search pipeline, and the query flow's built-in hook implementations.

A stage is a small immutable value with one method, ``run(search) -> search``, over the
:class:`Search` going through it (its request, index and candidates so far); stages compose
with ``>>`` into a :class:`Pipeline` and print as they compose::

    Retrieve(bm25, knn) >> Dense() >> BrowseBlend(browse_text_weight) >> ...

Stages do their I/O through ``search.searcher`` (the :class:`~shopsearch.query.searcher.Searcher`:
retrieval, which also brings the shopper's profile, ``search.profile``); the arithmetic is in
``fuse.py`` and ``personalise.py``. The strategies built from them are registered in ``strategies.py``.

>>> print(MinMax() >> Cut() >> Personalise())
MinMax(vector_weight) >> Cut(candidate_depth, keep=own) >> Personalise()
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from shopsearch import hooks
from shopsearch.encoders.text import item_text
from shopsearch.query.build import plain_bm25_body, request_filters
from shopsearch.query.fuse import add_popularity, blend_browse, blend_rerank, cut_keeping, rank
from shopsearch.query.personalise import personalise
from shopsearch.query.rerank import reranker_for
from shopsearch.query.respond import Answer
from shopsearch.query.retrieve import Retrieved
from shopsearch.query.understand import normalise_query


@dataclass
class Search:
    """One search on its way through a pipeline."""
    req: Any                    # the SearchRequest
    live: Any                   # the Live index answering
    searcher: Any               # the Searcher: retrieval and the other I/O
    depth: int                  # candidates kept (at least the page asked for)
    weight: float               # the vector weight of fusion
    got: Retrieved | None = None
    lexical: list = field(default_factory=list)   # BM25 candidates (with the shopper's own) to fuse
    answer: Answer = field(default_factory=Answer)
    stage_ms: dict[str, float] = field(default_factory=dict)  # each stage's wall time (Pipeline.run)

    @property
    def browse(self) -> bool:
        """Whether the query only names a category (then popularity leads)."""
        return bool(self.got and self.got.browse)

    @property
    def profile(self) -> dict | None:
        """The shopper's stored profile, read with the candidates in the same ``_msearch`` (None: no
        shopper, or no profile yet)."""
        return self.got.profile if self.got else None


class Stage:
    """A step of a search pipeline: ``run`` takes the search so far and returns it, moved on."""

    def run(self, search: Search) -> Search:
        raise NotImplementedError

    def args(self) -> tuple[str, ...]:
        """What the stage prints between its parentheses."""
        return ()

    def __rshift__(self, other: "Stage") -> "Pipeline":
        return Pipeline((self,)) >> other

    def __str__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.args())})"


@dataclass(frozen=True)
class Pipeline(Stage):
    """Stages run in order; ``a >> b`` appends, ``str`` prints the stages joined by ``>>``."""
    stages: tuple[Stage, ...] = ()

    def __rshift__(self, other: Stage) -> "Pipeline":
        more = other.stages if isinstance(other, Pipeline) else (other,)
        return Pipeline(self.stages + more)

    def run(self, search: Search) -> Search:
        """Each stage in turn; its wall time is added to ``search.stage_ms`` under its class name."""
        for stage in self.stages:
            started = time.perf_counter()
            search = stage.run(search)
            name = type(stage).__name__
            search.stage_ms[name] = search.stage_ms.get(name, 0.0) + (time.perf_counter() - started) * 1000
        return search

    def replace(self, kind: type, by: Stage) -> "Pipeline":
        """The same pipeline with every stage of type ``kind`` replaced by ``by``."""
        return Pipeline(tuple(by if type(s) is kind else s for s in self.stages))

    def __str__(self) -> str:
        return " >> ".join(str(s) for s in self.stages)


@dataclass(frozen=True)
class PlainBM25(Stage):
    """The baseline, the plain query a shop sends without shopsearch: no understanding, no fusion."""

    def run(self, s: Search) -> Search:
        body = plain_bm25_body(s.req.q, s.depth, source=s.searcher.source)
        hits = s.searcher.hits(s.live.index, body)
        s.answer = Answer(ranked=[(h["_id"], h["_score"]) for h in hits], sources={h["_id"]: h["_source"] for h in hits},
                          bodies=[body])
        return s


@dataclass(frozen=True)
class Retrieve(Stage):
    """BM25 and k-NN candidates (``knn``: ``always``, or ``weighted``: only with a vector weight > 0),
    with a browse query's popular products and the shopper's own products that answer the query."""
    knn: str = "weighted"

    def args(self) -> tuple[str, ...]:
        return ("bm25", "knn") if self.knn == "always" else ("bm25", "knn if vector_weight > 0")

    def run(self, s: Search) -> Search:
        req = s.req
        filters = request_filters(req.price_min, req.price_max, req.category, req.brand, req.colour, req.in_stock,
                                  req.gender)
        shopper = s.searcher.shopper(s.live, req.user) if req.user else None
        # fused strategies ask k-NN for knn_depth (the BM25 list fills any page), never by page
        # size, so a query ranks the same for every page size; dense reads k-NN alone
        knn_depth = s.depth if self.knn == "always" else min(s.depth, s.searcher.settings.knn_depth)
        got = s.searcher.retrieve(s.live, req.q, s.depth, filters, want_vector=self.knn == "always" or s.weight > 0,
                                  shopper=shopper, knn_depth=knn_depth)
        bm25 = dict(got.bm25)
        s.got = got
        s.lexical = got.bm25 if got.browse else got.bm25 + [(d, v) for d, v in got.personal if d not in bm25]
        s.answer = Answer(sources=got.sources, components={"bm25": bm25, "vector": dict(got.knn)},
                          bodies=list(got.bodies), degraded=got.degraded, applied=got.applied,
                          did_you_mean=got.did_you_mean)
        return s


@dataclass(frozen=True)
class MinMax(Stage):
    """Weighted min-max fusion of the BM25 and k-NN lists (``fuse.fuse_minmax``)."""

    def args(self) -> tuple[str, ...]:
        return ("vector_weight",)

    def run(self, s: Search) -> Search:
        s.answer.ranked = rank("minmax", s.lexical, s.got.knn, s.weight, s.searcher.settings.rrf_k)
        return s


@dataclass(frozen=True)
class RRF(Stage):
    """Weighted reciprocal rank fusion of the BM25 and k-NN lists (``fuse.fuse_rrf``)."""

    def args(self) -> tuple[str, ...]:
        return ("vector_weight", "rrf_k")

    def run(self, s: Search) -> Search:
        s.answer.ranked = rank("rrf", s.lexical, s.got.knn, s.weight, s.searcher.settings.rrf_k)
        return s


@dataclass(frozen=True)
class Dense(Stage):
    """The k-NN list alone (BM25 when there is no k-NN list: a SKU query or a degraded search)."""

    def run(self, s: Search) -> Search:
        s.answer.ranked = rank("dense", s.lexical, s.got.knn, s.weight, s.searcher.settings.rrf_k)
        return s


@dataclass(frozen=True)
class BrowseBlend(Stage):
    """A browse query: the category's products by popularity, text relevance second (``fuse.blend_browse``)."""

    def args(self) -> tuple[str, ...]:
        return ("browse_text_weight",)

    def run(self, s: Search) -> Search:
        if not s.browse:
            return s
        got, ranked = s.got, s.answer.ranked
        popularity = {d: float(got.sources[d].get("popularity_norm") or 0.0)
                      for d in {d for d, _ in got.popular + got.personal + ranked}}
        s.answer.ranked = blend_browse(popularity, ranked, s.searcher.settings.browse_text_weight)
        return s


@dataclass(frozen=True)
class Cut(Stage):
    """The first ``depth`` candidates; the shopper's own candidates survive the cut."""

    def args(self) -> tuple[str, ...]:
        return ("candidate_depth", "keep=own")

    def run(self, s: Search) -> Search:
        s.answer.ranked = cut_keeping(s.answer.ranked, s.depth, {d for d, _ in s.got.personal})
        return s


@dataclass(frozen=True)
class Boosts(Stage):
    """Every registered boost (``hooks.boosts``) over the fused scores; none on a browse query,
    whose ranking is popularity already."""

    def args(self) -> tuple[str, ...]:
        return tuple(name for name, _ in hooks.boosts())

    def run(self, s: Search) -> Search:
        if s.browse:
            return s
        for _, boost in hooks.boosts():
            s.answer.ranked = boost(s.answer.ranked, s.answer.sources, s.searcher.settings)
        return s


@dataclass(frozen=True)
class Rerank(Stage):
    """The head of the ranking re-ordered by a cross-encoder mixed with the fused score (``fuse.blend_rerank``)."""

    def args(self) -> tuple[str, ...]:
        return ("cross-encoder", "rerank_depth", "rerank_weight")

    def run(self, s: Search) -> Search:
        settings, ranked = s.searcher.settings, s.answer.ranked
        n = min(settings.rerank_depth, len(ranked))
        s.answer.components["rerank"] = {}
        if n < 2:
            return s
        reranker = reranker_for(settings, s.live.meta)
        head = ranked[:n]
        scores = reranker.score(s.got.text, [item_text(s.answer.sources.get(d, {})) for d, _ in head])
        s.answer.ranked = blend_rerank(ranked, scores, settings.rerank_weight)
        s.answer.components["rerank"] = {d: round(v, 6) for (d, _), v in zip(head, scores)}
        return s


@dataclass(frozen=True)
class Personalise(Stage):
    """A known shopper's boosts over the candidates, from the profile retrieval brought (``personalise.py``).

    No shopper, or one without a profile (cold start): the ranking stays as it is, never an error.
    """

    def run(self, s: Search) -> Search:
        if not s.req.user:
            return s
        s.answer.components["boost"] = {}
        if not s.profile or not s.answer.ranked:
            return s
        s.answer.ranked, s.answer.components["boost"] = personalise(
            s.answer.ranked, s.answer.sources, s.profile, s.searcher.settings.personalise_max_boost, s.searcher.weights)
        return s


# --- built-in hook implementations (see shopsearch/hooks.py) ------------------------------------

def popularity_boost(ranked, sources, settings):
    """``popularity_weight`` times an item's ``popularity_norm``, added after fusion."""
    return add_popularity(ranked, sources, settings.popularity_weight)


@hooks.hookimpl
def query_rewriters():
    return [("normalise", normalise_query)]


@hooks.hookimpl
def ranking_features():
    return [("bm25", lambda c: c.get("bm25")), ("vector", lambda c: c.get("vector")),
            ("popularity", lambda c: (c.get("source") or {}).get("popularity_norm"))]


@hooks.hookimpl
def boosts():
    return [("popularity", popularity_boost)]
