"""Retrieve: understand the query, build its requests and run them all in one ``_msearch``.

The retrieval adapter of the query flow (the one place the shopper search's candidates come
from OpenSearch). The text searched is the shopper's text after the query rewriters
(``understand.rewrite_query``); query understanding adds filters (``understand.py``); the
requests are built in ``build.py``: BM25 and k-NN over the same filters (k-NN filtered inside),
a browse query's most popular products, the shopper's own products that answer the query.

Failures degrade instead of failing: no query vector (encoder error or timeout) or a k-NN error
gives the BM25 candidates with ``degraded`` and the reason.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from opensearchpy import OpenSearch

from shopsearch.errors import EncoderError, SearchError, SettingsError
from shopsearch.query.build import (bm25_body, category_clause, knn_body, parse_text_fields, personal_body, popular_body,
                                    split_understood_filters)
from shopsearch.query.caches import LRU
from shopsearch.query.live import Live, encoder_for
from shopsearch.query.understand import Understood, rewrite_query, understand
from shopsearch.settings import Settings

TYPO_TOLERANCE = ("spelling", "fuzzy", "off")


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
    text: str = ""                     # the shopper's text after the query rewriters
    browse: str | None = None          # the category a browse query shows
    popular: list = field(default_factory=list)   # browse: the category's most popular products
    personal: list = field(default_factory=list)  # the shopper's own products that answer the query
    did_you_mean: str | None = None    # the corrected text, when spelling correction changed the query


class Retriever:
    """Query vectors (cached per model version) and the one ``_msearch`` of a search."""

    def __init__(self, client: OpenSearch, settings: Settings, vectors: LRU):
        self.client, self.settings, self.vectors = client, settings, vectors
        if settings.typo_tolerance not in TYPO_TOLERANCE:
            raise SettingsError(f"typo_tolerance must be one of {', '.join(TYPO_TOLERANCE)}, not {settings.typo_tolerance!r}",
                                field="typo_tolerance")
        self.text_fields = parse_text_fields(settings.text_fields)
        self.fuzzy = ({"prefix_length": settings.fuzzy_prefix_length, "weight": settings.fuzzy_weight}
                      if settings.typo_tolerance == "fuzzy" else None)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="encode")

    def query_vector(self, live: Live, text: str) -> tuple[list[float], bool]:
        """The query's vector from the encoder recorded for the index, and whether it came from the cache."""
        key = (live.meta.get("model_version"), text)
        cached = self.vectors.get(key)
        if cached is not None:
            return cached, True
        encoder = encoder_for(self.settings, live.meta)
        if live.meta.get("model_version") and encoder.version != live.meta["model_version"]:
            raise SearchError(f"index {live.index} was encoded with {live.meta['model_version']}, but the query "
                              f"encoder is {encoder.version}: reindex, or restore that model", 409, "model_mismatch")
        vector = self._pool.submit(encoder.encode, [text]).result(timeout=self.settings.encode_timeout)[0].tolist()
        self.vectors.put(key, vector)
        return vector, False

    def retrieve(self, live: Live, q: str, depth: int, filters: list[dict], want_vector: bool = True,
                 personal_ids: list[str] = ()) -> Retrieved:
        """The candidates of one query: BM25 and k-NN (and browse / personal lists) in one ``_msearch``.

        A browse query (a category name and nothing else) is limited to that category and also
        asks for its most popular products; a shopper's own products that answer the query are
        asked for by id (``personal_ids``), so "buy again" can lift them.
        """
        rewritten = rewrite_query(q)
        corrected = live.speller.correct(rewritten) if live.speller is not None else None
        if corrected is not None and corrected.changed:
            rewritten = corrected.text
        understood = understand(rewritten, live.facets)
        hard, boosts = split_understood_filters(understood.filters, self.settings.query_filters)
        filters = filters + hard
        if understood.browse:
            filters = filters + [category_clause(understood.browse)]
        # words that only lift (boost mode) stay in the text: titles often say "white" where the
        # colour facet is empty; words that filter are enforced by the filter instead
        text = understood.text if self.settings.query_filters == "filter" else rewritten
        spelling = [f"spelling: {a} -> {b}" for a, b in corrected.changes] if corrected is not None else []
        got = Retrieved(applied=spelling + list(understood.applied) + (["sku: lexical only"] if understood.sku else []),
                        text=rewritten, browse=understood.browse,
                        did_you_mean=corrected.text if corrected is not None and corrected.changed else None)
        vector = self._vector(live, text, got) if want_vector and not understood.sku else None
        named = self._requests(understood, text, depth, filters, boosts, vector, list(personal_ids))
        got.bodies = list(named.values())
        self._run(live, named, got)
        return got

    def _vector(self, live: Live, text: str, got: Retrieved) -> list[float] | None:
        """The query vector, or None with ``got.degraded`` saying why (the search goes on with BM25)."""
        try:
            vector, got.vector_cached = self.query_vector(live, text)
            return vector
        except concurrent.futures.TimeoutError:
            got.degraded = f"query encoding took longer than {self.settings.encode_timeout}s"
        except (EncoderError, OSError, RuntimeError) as e:
            got.degraded = f"query encoder failed: {e}"
        return None

    def _requests(self, understood: Understood, text: str, depth: int, filters: list[dict], boosts: list[dict],
                  vector: list[float] | None, personal_ids: list[str]) -> dict[str, dict]:
        """The named request bodies of one search, in ``_msearch`` order."""
        named = {"bm25": bm25_body(text, depth, filters, boosts, self.text_fields, self.settings.text_tie_breaker,
                                   self.fuzzy)}
        if vector is not None:
            named["knn"] = knn_body(vector, depth, depth, filters)
        if understood.browse:
            named["popular"] = popular_body(depth, filters)
        if personal_ids:
            named["personal"] = personal_body(text, personal_ids, filters, text_must=not understood.browse,
                                              fields=self.text_fields)
        return named

    def _run(self, live: Live, named: dict[str, dict], got: Retrieved) -> None:
        """Run the requests in one ``_msearch`` and read their candidates into ``got``."""
        lines = []
        for body in named.values():
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
