"""The shopper search: one object used by the proxy and by ``shopsearch eval`` alike.

Stages, in order (each a pure function elsewhere; this module does the I/O between them):

1. resolve the catalogue's live index and its ``_meta`` (model, version) — caches are emptied
   when the alias has moved;
2. understand the query (``understand.py``): normalise, SKU check, facet filters;
3. build BM25 and k-NN requests (``query.py``) with the same filters, k-NN filtered inside;
4. run both in one ``_msearch``; fuse (min-max weighted, or RRF);
5. personalise: the stored Painless script over the fused candidates (``personalise.py``);
6. respond, with per-item components when ``explain`` is asked.

Failures degrade instead of failing: no query vector (encoder error or timeout) or a k-NN error
gives BM25 results with ``degraded`` and the reason.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field

from opensearchpy import NotFoundError, OpenSearch

from shopsearch.query.caches import LRU, TTLCache
from shopsearch.encoders.text import EncoderError, text_encoder
from shopsearch.index.mapping import MappingError, check_text_dimension, load_script
from shopsearch.index.versions import live_index
from shopsearch.query.personalise import SCRIPT_ID, parse_weights, script_params
from shopsearch.query.build import (add_popularity, blend_browse, bm25_body, category_clause, knn_body, minmax, personal_body,
                    plain_bm25_body, popular_body, rank, request_filters, split_understood_filters)
from shopsearch.settings import Settings
from shopsearch.query.understand import Facets, normalise_query, understand
from shopsearch.query.rerank import cached_reranker
from pathlib import Path
from shopsearch.encoders.text import item_text
from shopsearch.privacy import pseudonym
from shopsearch.index.profiles import get_profile
from shopsearch.errors import SearchError  # noqa: F401 (raised here; importable from here too)

STRATEGIES = ("bm25", "dense", "hybrid", "hybrid-rrf", "hybrid-rerank")


@dataclass(frozen=True)
class SearchRequest:
    q: str
    user: str | None = None
    size: int = 10
    page: int = 0
    strategy: str = "hybrid"
    vector_weight: float | None = None
    price_min: float | None = None
    price_max: float | None = None
    category: str | None = None
    brand: str | None = None
    colour: str | None = None
    in_stock: bool | None = None
    explain: bool = False

    def cache_key(self, index: str) -> str:
        return hashlib.sha256(json.dumps([index, asdict(self)], sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Retrieved:
    """What retrieval found for one query, before fusion."""
    applied: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    bm25: list = field(default_factory=list)
    knn: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    degraded: str | None = None
    vector_cached: bool = False
    browse: str | None = None          # the category a browse query shows
    popular: list = field(default_factory=list)   # browse: the category's most popular products
    personal: list = field(default_factory=list)  # the shopper's own products that answer the query


@dataclass
class Live:
    index: str
    meta: dict
    facets: Facets
    checked: float = field(default_factory=time.monotonic)


class Searcher:
    """Holds the client, caches and settings of one process's query path."""

    def __init__(self, client: OpenSearch, settings: Settings):
        self.client, self.settings = client, settings
        self.vectors = LRU(settings.query_cache_size)
        self.results = TTLCache(1000, settings.result_cache_seconds)
        self.profiles = TTLCache(10000, 30.0)
        self._live: dict[str, Live] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="encode")
        self._script_ready = False
        self.weights = parse_weights(settings.personalise_weights)

    # --- 1. the live index ---------------------------------------------------------------
    def live(self, catalogue: str) -> Live:
        cached = self._live.get(catalogue)
        if cached and time.monotonic() - cached.checked < 1.0:
            return cached
        index = live_index(self.client, catalogue)
        if index is None:
            raise SearchError(f"catalogue {catalogue!r} has no live index", 404, "not_found")
        if cached and cached.index == index:
            cached.checked = time.monotonic()
            return cached
        mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
        meta = mapping.get("_meta", {})
        self._check_dimensions(index, mapping)
        live = Live(index, meta, self._facets(index))
        with self._lock:
            if cached is not None:  # the alias moved: nothing cached for the old version may answer
                self.vectors.clear()
                self.results.clear()
            self._live[catalogue] = live
        return live

    def _encoder(self, meta: dict):
        """The encoder recorded in an index's ``_meta`` (loaded once per process)."""
        return text_encoder(self.settings.replace(text_model=meta.get("model", self.settings.text_model)))

    def _check_dimensions(self, index: str, mapping: dict) -> None:
        """Refuse an index whose vectors do not fit its encoder (checked when a version goes live here)."""
        try:
            encoder = self._encoder(mapping.get("_meta", {}))
        except (EncoderError, OSError):
            return  # no encoder: queries degrade to BM25, which needs no vectors
        try:
            check_text_dimension(index, mapping, encoder.name, encoder.dimension)
        except MappingError as e:
            raise SearchError(str(e), 409, "model_mismatch") from None

    def _facets(self, index: str) -> Facets:
        aggs = {f: {"terms": {"field": f, "size": 300}} for f in ("colour", "brand", "gender", "category")}
        found = self.client.search(index=index, body={"size": 0, "aggs": aggs})["aggregations"]
        return Facets.from_values(**{f: [b["key"] for b in found[f]["buckets"]] for f in aggs})

    # --- 3. the query vector -------------------------------------------------------------
    def query_vector(self, live: Live, text: str) -> tuple[list[float], bool]:
        """The query's vector from the encoder recorded for the index, and whether it came from the cache."""
        key = (live.meta.get("model_version"), text)
        cached = self.vectors.get(key)
        if cached is not None:
            return cached, True
        encoder = self._encoder(live.meta)
        if live.meta.get("model_version") and encoder.version != live.meta["model_version"]:
            raise SearchError(f"index {live.index} was encoded with {live.meta['model_version']}, but the query "
                              f"encoder is {encoder.version}: reindex, or restore that model", 409, "model_mismatch")
        vector = self._pool.submit(encoder.encode, [text]).result(timeout=self.settings.encode_timeout)[0].tolist()
        self.vectors.put(key, vector)
        return vector, False

    # --- the search ----------------------------------------------------------------------
    def pinned(self, catalogue: str, index: str) -> Live:
        """A given version of a catalogue, whatever the alias says (to evaluate a candidate index)."""
        if not index.startswith(f"{catalogue}-v") or not self.client.indices.exists(index=index):
            raise SearchError(f"{index} is not a version of {catalogue}", 404, "not_found")
        key = f"{catalogue}@{index}"
        if key not in self._live:
            mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
            self._check_dimensions(index, mapping)
            self._live[key] = Live(index, mapping.get("_meta", {}), self._facets(index))
        return self._live[key]

    def search(self, catalogue: str, req: SearchRequest, index: str | None = None) -> dict:
        """One shopper search on the catalogue's live index (or on ``index``, one of its versions)."""
        if req.strategy not in STRATEGIES:
            raise SearchError(f"unknown strategy {req.strategy!r}; one of {', '.join(STRATEGIES)}", field="strategy")
        live = self.pinned(catalogue, index) if index else self.live(catalogue)
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
        s = self.settings
        depth = max(s.candidate_depth, (req.page + 1) * req.size)
        if req.strategy == "bm25":  # the baseline: the plain query a shop sends without shopsearch
            body = plain_bm25_body(req.q, depth)
            hits = self.client.search(index=live.index, body=body)["hits"]["hits"]
            ranked = [(h["_id"], h["_score"]) for h in hits]
            return self._respond(live, req, ranked, {h["_id"]: h["_source"] for h in hits}, {}, [body], None, [])
        weight = s.vector_weight if req.vector_weight is None else req.vector_weight
        filters = request_filters(req.price_min, req.price_max, req.category, req.brand, req.colour, req.in_stock)
        profile = self.profile(live.meta.get("catalogue", ""), req.user) if req.user else None
        own = sorted((profile or {}).get("items") or {}, key=lambda d: -profile["items"][d]) if self.weights["w_item"] > 0 else []
        got = self._retrieve(live, req.q, depth, filters, want_vector=req.strategy == "dense" or weight > 0, personal_ids=own)
        fusion = "rrf" if req.strategy == "hybrid-rrf" or (req.strategy in ("hybrid", "hybrid-rerank") and s.fusion == "rrf") else "minmax"
        bm25 = got.bm25 + [(d, v) for d, v in got.personal if d not in dict(got.bm25)] if not got.browse else got.bm25
        ranked = rank("dense" if req.strategy == "dense" else fusion, bm25, got.knn, weight, s.rrf_k)
        if got.browse:  # the category's products by popularity, text relevance second
            popularity = {d: float(got.sources[d].get("popularity_norm") or 0.0)
                          for d in {d for d, _ in got.popular + got.personal + ranked}}
            ranked = blend_browse(popularity, ranked, s.browse_text_weight)
        keep = {d for d, _ in got.personal}  # the shopper's own candidates survive the depth cut
        ranked = ranked[:depth] + [(d, v) for d, v in ranked[depth:] if d in keep]
        if not got.browse:
            ranked = add_popularity(ranked, got.sources, s.popularity_weight)  # part of "fused" in explain
        components = {"bm25": dict(got.bm25), "vector": dict(got.knn)}
        if req.strategy == "hybrid-rerank":
            ranked, components["rerank"] = self._rerank(live, req.q, ranked, got.sources)
        bodies = list(got.bodies)
        if req.user:
            ranked, boosts, body = self._personalise(live, req.user, ranked)
            if body is not None:
                bodies.append(body)
            components["boost"] = boosts
        out = self._respond(live, req, ranked, got.sources, components, bodies, got.degraded, got.applied)
        out["vector_cached"] = got.vector_cached
        return out

    def _retrieve(self, live: Live, q: str, depth: int, filters: list[dict], want_vector: bool = True,
                  personal_ids: list[str] = ()) -> "Retrieved":
        """Stages 2-4 up to fusion: understand, build, and run BM25 and k-NN in one ``_msearch``.

        A browse query (a category name and nothing else) is limited to that category and also
        asks for its most popular products; a shopper's own products that answer the query are
        asked for by id (``personal_ids``), so "buy again" can lift them.
        """
        understood = understand(q, live.facets)
        hard, boosts = split_understood_filters(understood.filters, self.settings.query_filters)
        filters = filters + hard
        if understood.browse:
            filters = filters + [category_clause(understood.browse)]
        # words that only lift (boost mode) stay in the text: titles often say "white" where the
        # colour facet is empty; words that filter are enforced by the filter instead
        text = understood.text if self.settings.query_filters == "filter" else normalise_query(q)
        got = Retrieved(applied=list(understood.applied) + (["sku: lexical only"] if understood.sku else []),
                        browse=understood.browse)
        vector = None
        if want_vector and not understood.sku:
            try:
                vector, got.vector_cached = self.query_vector(live, text)
            except concurrent.futures.TimeoutError:
                got.degraded = f"query encoding took longer than {self.settings.encode_timeout}s"
            except (EncoderError, OSError, RuntimeError) as e:
                got.degraded = f"query encoder failed: {e}"
        named = {"bm25": bm25_body(text, depth, filters, boosts)}
        if vector is not None:
            named["knn"] = knn_body(vector, depth, depth, filters)
        if understood.browse:
            named["popular"] = popular_body(depth, filters)
        if personal_ids:
            named["personal"] = personal_body(text, list(personal_ids), filters, text_must=not understood.browse)
        got.bodies = list(named.values())
        lines = []
        for body in got.bodies:
            lines += [{"index": live.index}, body]
        responses = dict(zip(named, self.client.msearch(body=lines)["responses"]))
        for name, response in responses.items():
            if "error" not in response:
                continue
            reason = response["error"].get("reason", response["error"])
            if name == "knn":
                got.degraded = f"k-NN search failed: {reason}"
            else:
                raise SearchError(f"OpenSearch rejected the query: {reason}", 502, "upstream_error")
        hits = {name: r["hits"]["hits"] for name, r in responses.items() if "error" not in r}
        got.sources = {h["_id"]: h["_source"] for found in hits.values() for h in found}
        got.bm25, got.knn = ([(h["_id"], h["_score"]) for h in hits.get(name, [])] for name in ("bm25", "knn"))
        got.popular = [(h["_id"], float(h["_source"].get("popularity_norm") or 0.0)) for h in hits.get("popular", [])]
        got.personal = [(h["_id"], h["_score"]) for h in hits.get("personal", [])]
        return got

    def candidates(self, catalogue: str, q: str, depth: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The BM25 and k-NN candidate lists of a query before fusion (``eval tune`` fuses them offline)."""
        got = self._retrieve(self.live(catalogue), q, depth, [])
        return got.bm25, got.knn

    # --- 4b. re-rank (strategy hybrid-rerank) -------------------------------------------
    def reranker(self, meta: dict):
        """The cross-encoder for an index: ``rerank_model``, else the one trained with its model."""
        path = self.settings.rerank_model
        if not path and meta.get("model"):
            beside = Path(meta["model"]).parent / "cross-encoder"
            path = str(beside) if beside.is_dir() else ""
        if not path:
            raise SearchError(f"no re-ranker for model {meta.get('model_version')}: train one (shopsearch finetune) "
                              "or set rerank_model", 409, "no_reranker", field="strategy")
        try:
            return cached_reranker(path, self.settings.device)
        except (OSError, ValueError) as e:
            raise SearchError(f"re-ranker {path} cannot be loaded: {e}", 409, "no_reranker") from None

    def _rerank(self, live: Live, q: str, ranked: list[tuple[str, float]], sources: dict):
        """The head of the fused list re-ordered by ``(1 - w) * fused + w * cross-encoder`` (both min-max
        scaled within the head, ``w`` = ``rerank_weight``), spread over the head's fused range (so a
        later boost still means the same); returns the ranking and the cross-encoder scores."""
        n = min(self.settings.rerank_depth, len(ranked))
        if n < 2:
            return ranked, {}
        reranker = self.reranker(live.meta)
        head = ranked[:n]
        scores = reranker.score(normalise_query(q), [item_text(sources.get(d, {})) for d, _ in head])
        ce = {d: v for (d, _), v in zip(head, scores)}
        w = self.settings.rerank_weight
        fused_part, ce_part = minmax(dict(head)), minmax(ce)
        mixed = {d: (1 - w) * fused_part[d] + w * ce_part[d] for d, _ in head}
        ordered = sorted(head, key=lambda kv: -mixed[kv[0]])  # stable: equal scores keep the fused order
        lo, hi = min(v for _, v in head), max(v for _, v in head)
        spread = [(d, lo + (hi - lo) * mixed[d]) for d, _ in ordered]
        return spread + ranked[n:], {d: round(v, 6) for d, v in ce.items()}

    # --- 5. personalise ------------------------------------------------------------------
    def profile(self, catalogue: str, user: str) -> dict | None:
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

    def ensure_script(self) -> None:
        if not self._script_ready:
            self.client.put_script(id=SCRIPT_ID, body={"script": {"lang": "painless", "source": load_script("personalise")}})
            self._script_ready = True

    def _personalise(self, live: Live, user: str, ranked: list[tuple[str, float]]):
        profile = self.profile(live.meta.get("catalogue", ""), user)
        if not profile or not ranked:
            return ranked, {}, None  # cold start: unpersonalised, never an error
        if profile.get("model_version") and profile["model_version"] != live.meta.get("model_version"):
            profile = {**profile, "vector": None}  # a profile vector from another model is not comparable
        self.ensure_script()
        fused = dict(ranked)
        params = script_params(profile, fused, self.settings.personalise_max_boost, self.weights)
        body = {"size": len(ranked), "_source": False,
                "query": {"script_score": {"query": {"ids": {"values": list(fused)}}, "script": {"id": SCRIPT_ID, "params": params}}}}
        hits = self.client.search(index=live.index, body=body)["hits"]["hits"]
        final = {h["_id"]: h["_score"] for h in hits}
        boosts = {d: round(final.get(d, s) - s, 6) for d, s in ranked}
        reranked = sorted(((d, final.get(d, s)) for d, s in ranked), key=lambda kv: (-kv[1], kv[0]))
        shown = {**body, "query": {"script_score": {**body["query"]["script_score"],
                                                    "script": {"id": SCRIPT_ID, "params": {**params, "fused": f"<{len(fused)} candidates>"}}}}}
        return reranked, boosts, shown

    # --- 6. respond ----------------------------------------------------------------------
    def _respond(self, live, req, ranked, sources, components, bodies, degraded, applied) -> dict:
        page = ranked[req.page * req.size:(req.page + 1) * req.size]
        hits = []
        for d, score in page:
            hit = {"id": d, "score": round(float(score), 6), **{k: v for k, v in sources.get(d, {}).items() if not k.endswith("_vector")}}
            if req.explain:
                hit["explain"] = {"bm25": components.get("bm25", {}).get(d), "vector": components.get("vector", {}).get(d),
                                  "fused": round(float(score) - components.get("boost", {}).get(d, 0.0), 6),
                                  "boost": components.get("boost", {}).get(d, 0.0)}
                if "rerank" in components:
                    hit["explain"]["rerank"] = components["rerank"].get(d)
            hits.append(hit)
        out = {"catalogue": live.meta.get("catalogue"), "index": live.index, "model_version": live.meta.get("model_version"),
               "q": req.q, "strategy": req.strategy, "total": len(ranked), "page": req.page, "size": req.size, "hits": hits,
               "degraded": degraded is not None, "filters_applied": applied}
        if degraded:
            out["reason"] = degraded
        if req.explain:
            out["explain"] = {"requests": [_shorten(b) for b in bodies]}
        return out


def _shorten(body):
    """A request for ``explain``, with every vector elided (k-NN query vectors, profile vectors)."""
    if isinstance(body, dict):
        return {k: (f"<{len(v)} floats>" if k == "vector" and isinstance(v, list) and len(v) > 8 else _shorten(v))
                for k, v in body.items()}
    if isinstance(body, list):
        return [_shorten(v) for v in body]
    return body
