"""The shopper search: one object used by the proxy and by ``shopsearch eval`` alike.

The flow, one file per step (this module runs them):

1. the live index (``live.py``): the catalogue's alias resolved at most once a second, caches
   emptied when it moves, an index refused when its vectors do not fit its encoder;
2. understand (``understand.py``): the query rewriters, SKU check, facet filters;
3. build (``build.py``) and retrieve (``retrieve.py``): BM25 and k-NN with the same filters, and
   a known shopper's profile and own products, run in one ``_msearch`` (one round trip per
   search, personalised or not); failures degrade to BM25 with the reason;
4. the strategy's pipeline (``strategies.py``, stages in ``stages.py``): fuse (``fuse.py``),
   browse blend, boosts, re-rank (``rerank.py``), personalise (``personalise.py``);
5. respond (``respond.py``), with per-item components and the pipeline when ``explain`` is asked.

:class:`Searcher` is the live-index registry, the retrieval adapter and the pipeline runner;
answers are cached for ``result_cache_seconds`` per index version, query vectors in a local LRU
in front of a Redis every worker shares (``caches.QueryVectors``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace

from opensearchpy import NotFoundError, OpenSearch, OpenSearchException

from shopsearch.errors import EncoderError, SearchError
from shopsearch.index.profiles import get_profile, profile_id
from shopsearch.index.versions import live_catalogues
from shopsearch.privacy import pseudonym
from shopsearch.query.caches import LRU, QueryVectors, TTLCache, shared_cache_url
from shopsearch.query.learned import LiveRankers
from shopsearch.query.live import Live, LiveIndexes, encoder_for
from shopsearch.query.personalise import parse_weights
from shopsearch.query.respond import respond, shown_fields
from shopsearch.query.retrieve import Retrieved, Retriever, Shopper
from shopsearch.query.stages import Search
from shopsearch.query.strategies import STRATEGIES, pipeline
from shopsearch.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["STRATEGIES", "Live", "Retrieved", "SearchError", "SearchRequest", "Searcher"]


@dataclass(frozen=True)
class SearchRequest:
    """A shopper's search: the words, the shopper, the page, the strategy and explicit filters."""
    q: str
    user: str | None = None
    size: int = 10
    page: int = 0
    strategy: str | None = None        # None: the catalogue's default (Searcher.default_strategy)
    vector_weight: float | None = None
    price_min: float | None = None
    price_max: float | None = None
    category: str | None = None
    brand: str | None = None
    colour: str | None = None
    in_stock: bool | None = None
    explain: bool = False
    gender: str | None = None

    def cache_key(self, index: str) -> str:
        """The result cache's key of this request on ``index``."""
        return hashlib.sha256(json.dumps([index, asdict(self)], sort_keys=True, default=str).encode()).hexdigest()


class Searcher:
    """The query path of one process: live indexes, retrieval, caches, and the strategies' pipelines."""

    def __init__(self, client: OpenSearch, settings: Settings):
        self.client, self.settings = client, settings
        self.vectors = QueryVectors(LRU(settings.query_cache_size),
                                    shared_cache_url(settings.vector_cache_url, settings.redis_url),
                                    settings.vector_cache_seconds)
        self.results = TTLCache(1000, settings.result_cache_seconds)
        self.profiles = TTLCache(10000, 30.0)
        self.indexes = LiveIndexes(client, settings, caches=(self.vectors, self.results))
        self.retriever = Retriever(client, settings, self.vectors)
        self.source = self.retriever.source  # every request's _source: shown fields + ranking fields, no vectors
        self.weights = parse_weights(settings.personalise_weights)
        self.shown = shown_fields(settings.response_fields)
        self.rankers = LiveRankers(client, settings.ranker_warm_products)

    # --- the live index --------------------------------------------------------------------
    def live(self, catalogue: str) -> Live:
        """The catalogue's live index version (``live.py``)."""
        return self.indexes.live(catalogue)

    def pinned(self, catalogue: str, index: str) -> Live:
        """A given version of a catalogue, whatever the alias says (to evaluate a candidate index)."""
        return self.indexes.pinned(catalogue, index)

    def warm(self, catalogues: str = "*") -> dict[str, dict]:
        """Load what the first search of each catalogue would (``catalogues``: comma-separated, ``*``
        every live one): the live version with its facets and speller, the query encoder (one
        encoding), the learned ranker (which then prepares its product text in the background).
        Per catalogue, what was loaded, or the error that stopped it (searches then load it themselves)."""
        try:
            names = live_catalogues(self.client) if catalogues.strip() == "*" else \
                [c.strip() for c in catalogues.split(",") if c.strip()]
        except OpenSearchException as e:  # the cluster is not up yet: searches load what they need
            log.warning("no catalogue warmed: %s", e)
            return {}
        out: dict[str, dict] = {}
        for catalogue in names:
            try:
                live = self.live(catalogue)
                done = {"index": live.index, "speller": live.speller is not None}
                try:
                    encoder = encoder_for(self.settings, live.meta)
                    encoder.encode(["warm up"])
                    done["encoder"] = encoder.version
                except (EncoderError, OSError, RuntimeError) as e:  # searches degrade to BM25 alike
                    done["encoder"] = f"none: {e}"
                ranker, note = self.rankers.for_index(live)
                done["ranker"] = ranker.version if ranker is not None else note
            except (OpenSearchException, SearchError) as e:
                done = {"error": str(e)}
            log.info("warmed catalogue %s: %s", catalogue, done)
            out[catalogue] = done
        return out

    # --- retrieval -------------------------------------------------------------------------
    def query_vector(self, live: Live, text: str) -> tuple[list[float], str | None]:
        """The query's vector for the index, and which cache had it (``local``, ``shared``; None: encoded)."""
        return self.retriever.query_vector(live, text)

    def retrieve(self, live: Live, q: str, depth: int, filters: list[dict], want_vector: bool = True,
                 personal_ids: list[str] = (), shopper: Shopper | None = None, knn_depth: int | None = None) -> Retrieved:
        """The candidates of one query before fusion, with the shopper's profile (``retrieve.py``)."""
        return self.retriever.retrieve(live, q, depth, filters, want_vector, personal_ids, shopper, knn_depth)

    def shopper(self, live: Live, user: str) -> Shopper:
        """How retrieval asks for a shopper: their profile document, and their own products when ``item`` weighs."""
        doc = profile_id(live.meta.get("catalogue", ""), pseudonym(user, self.settings.pseudonym_salt))
        return Shopper(doc, own_items=self.weights["w_item"] > 0)

    def candidates(self, catalogue: str, q: str, depth: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The BM25 and k-NN candidate lists of a query before fusion (``eval tune`` fuses them offline)."""
        got = self.retrieve(self.live(catalogue), q, depth, [])
        return got.bm25, got.knn

    def hits(self, index: str, body: dict) -> list[dict]:
        """The hits of one search request on ``index``."""
        return self.client.search(index=index, body=body)["hits"]["hits"]

    # --- the search ------------------------------------------------------------------------
    def default_strategy(self, live: Live) -> str:
        """``learned`` once a ranker passed the gate for the index, else ``hybrid``."""
        return "learned" if self.rankers.for_index(live)[0] is not None else "hybrid"

    def search(self, catalogue: str, req: SearchRequest, index: str | None = None) -> dict:
        """One shopper search on the catalogue's live index (or on ``index``, one of its versions);
        a request without a strategy gets the catalogue's default (:meth:`default_strategy`)."""
        if req.strategy is not None and req.strategy not in STRATEGIES:
            raise SearchError(f"unknown strategy {req.strategy!r}; one of {', '.join(STRATEGIES)}", field="strategy")
        if (req.page + 1) * req.size > self.settings.max_result_depth:
            raise SearchError(f"page {req.page} of size {req.size} reaches result {(req.page + 1) * req.size}; at most "
                              f"{self.settings.max_result_depth} results can be paged to (setting max_result_depth)",
                              field="page")
        live = self.pinned(catalogue, index) if index else self.live(catalogue)
        if req.strategy is None:
            req = replace(req, strategy=self.default_strategy(live))
        key = req.cache_key(live.index)
        cached = self.results.get(key)
        if cached is not None:
            return {**cached, "cached": True}
        started = time.perf_counter()
        out = self._search(live, req)
        out.update(took_ms=round((time.perf_counter() - started) * 1000, 2), cached=False)
        self.results.put(key, out)
        return out

    def _search(self, live: Live, req: SearchRequest) -> dict:
        """Run the strategy's pipeline and shape its answer."""
        s = self.settings
        steps = pipeline(req.strategy, s)
        weight = s.vector_weight if req.vector_weight is None else req.vector_weight
        depth = max(s.candidate_depth, (req.page + 1) * req.size)
        done = steps.run(Search(req=req, live=live, searcher=self, depth=depth, weight=weight))
        out = respond(live, req, done.answer, str(steps), self.shown)
        out["stage_ms"] = {name: round(ms, 3) for name, ms in done.stage_ms.items()}
        if done.got is not None:  # the baseline retrieves no vector
            out["vector_cached"] = done.got.vector_cached
            out["vector_cache"] = done.got.vector_cache
        return out

    # --- profiles outside the search -------------------------------------------------------------
    def profile(self, catalogue: str, user: str) -> dict | None:
        """The shopper's stored profile (cached 30 s), or None: for routes that need it before their
        own request (recommendations). A search reads it in its ``_msearch`` instead (``Search.profile``)."""
        key = (catalogue, user)
        found = self.profiles.get(key)
        if found is not None:
            return found or None
        try:
            doc = get_profile(self.client, self.settings, catalogue, pseudonym(user, self.settings.pseudonym_salt)) or {}
        except NotFoundError:  # no profiles index yet
            doc = {}
        self.profiles.put(key, doc)
        return doc or None

    def forget_profiles(self) -> None:
        """Empty this process's cached profiles (after profiles changed or a shopper was forgotten)."""
        self.profiles.clear()
