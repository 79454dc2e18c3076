"""Retrieve: understand the query, build its requests and run them all in one ``_msearch``.

The retrieval adapter of the query flow (the one place the shopper search's candidates come
from OpenSearch). The text searched is the shopper's text after the query rewriters
(``understand.rewrite_query``); query understanding adds filters (``understand.py``); the
requests are built in ``build.py``: BM25 and k-NN over the same filters (k-NN filtered inside),
a browse query's most popular products and, for a known shopper, their profile and their own
products that answer the query (a terms lookup on the profile): a personalised search is one
``_msearch``, like any other. Every request fetches only ``response_fields`` plus the ranking
fields, never a vector: from doc values on an index that keeps them exactly, else from
``_source`` (the live index's ``Live.fetch``, ``build.fetch_for``).

Failures degrade instead of failing: no query vector (encoder error or timeout) or a k-NN error
gives the BM25 candidates with ``degraded`` and the reason.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field

from opensearchpy import OpenSearch

from shopsearch.errors import EncoderError, SearchError, SettingsError
from shopsearch.query.build import (PROFILE_ITEMS_FIELD, bm25_body, category_clause, knn_body, parse_text_fields,
                                    personal_body, personal_lookup_body, popular_body, profile_body, source_filter,
                                    split_understood_filters)
from shopsearch.query.caches import QueryVectors
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
    vector_cache: str | None = None    # where the query vector came from: local, shared, or None (encoded)
    text: str = ""                     # the shopper's text after the query rewriters
    browse: str | None = None          # the category a browse query shows
    popular: list = field(default_factory=list)   # browse: the category's most popular products
    personal: list = field(default_factory=list)  # the shopper's own products that answer the query
    profile: dict | None = None        # the shopper's stored profile, read in the same _msearch (None: none)
    did_you_mean: str | None = None    # the corrected text, when spelling correction changed the query


@dataclass(frozen=True)
class Shopper:
    """Who searches, as retrieval asks for them: the profile document and whether to ask for their own products."""
    profile_doc: str
    own_items: bool = True


class Retriever:
    """Query vectors (cached per model version) and the one ``_msearch`` of a search."""

    def __init__(self, client: OpenSearch, settings: Settings, vectors: QueryVectors):
        self.client, self.settings, self.vectors = client, settings, vectors
        self.source = source_filter(settings.response_fields)
        if settings.typo_tolerance not in TYPO_TOLERANCE:
            raise SettingsError(f"typo_tolerance must be one of {', '.join(TYPO_TOLERANCE)}, not {settings.typo_tolerance!r}",
                                field="typo_tolerance")
        self.text_fields = parse_text_fields(settings.text_fields)
        self.fuzzy = ({"prefix_length": settings.fuzzy_prefix_length, "weight": settings.fuzzy_weight}
                      if settings.typo_tolerance == "fuzzy" else None)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="encode")

    def query_vector(self, live: Live, text: str) -> tuple[list[float], str | None]:
        """The query's vector from the encoder recorded for the index, and which cache had it (None: encoded now)."""
        version = live.meta.get("model_version")
        cached, where = self.vectors.get(version, text)
        if cached is not None:
            return cached, where
        encoder = encoder_for(self.settings, live.meta)
        if version and encoder.version != version:
            raise SearchError(f"index {live.index} was encoded with {version}, but the query "
                              f"encoder is {encoder.version}: reindex, or restore that model", 409, "model_mismatch")
        vector = self._pool.submit(encoder.encode, [text]).result(timeout=self.settings.encode_timeout)[0].tolist()
        self.vectors.put(version, text, vector)
        return vector, None

    def retrieve(self, live: Live, q: str, depth: int, filters: list[dict], want_vector: bool = True,
                 personal_ids: list[str] = (), shopper: Shopper | None = None, knn_depth: int | None = None) -> Retrieved:
        """The candidates of one query: BM25 and k-NN (and browse / personal lists, the profile) in one ``_msearch``.

        A browse query (a category name and nothing else) is limited to that category and also
        asks for its most popular products. A ``shopper``'s profile is read in the same request,
        and their own products that answer the query are asked for by a terms lookup on it, so
        "buy again" can lift them; ``personal_ids`` asks for given products by id instead.
        ``knn_depth``: k of the k-NN request (default ``depth``).
        """
        rewritten = original = rewrite_query(q)
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
        # the encoder reads the shopper's own words: a word the catalogue lacks ("footwear") may be
        # one the model knows, and only the lexical match needs the catalogue's spelling
        meant = text if original == rewritten or self.settings.query_filters == "filter" else original
        vector = self._vector(live, meant, got) if want_vector and not understood.sku else None
        requests = self._requests(understood, text, depth, filters, boosts, vector, list(personal_ids), shopper,
                                  live.fetch.body, knn_depth or depth)
        got.bodies = [body for _, body in requests.values()]
        self._run(requests, got, live)
        if shopper and shopper.own_items and got.profile and PROFILE_ITEMS_FIELD not in got.profile:
            self._legacy_personal(live, understood, text, filters, got)
        return got

    def _legacy_personal(self, live: Live, understood: Understood, text: str, filters: list[dict], got: Retrieved) -> None:
        """A profile stored before ``item_ids`` existed: its own products asked for by id, a second request
        (rewriting the profile, e.g. the next ``profiles update``, makes it one again)."""
        items = got.profile.get("items") or {}
        if not items:
            return
        body = personal_body(text, sorted(items, key=lambda d: -items[d]), filters, not understood.browse,
                             fields=self.text_fields, fetch=live.fetch.body)
        got.bodies.append(body)
        hits = [(live.fetch.read(h), h["_score"]) for h in self.client.search(index=live.index, body=body)["hits"]["hits"]]
        got.sources.update(dict(read for read, _ in hits))
        got.personal = [(d, score) for (d, _), score in hits]

    def _vector(self, live: Live, text: str, got: Retrieved) -> list[float] | None:
        """The query vector, or None with ``got.degraded`` saying why (the search goes on with BM25)."""
        try:
            vector, got.vector_cache = self.query_vector(live, text)
            got.vector_cached = got.vector_cache is not None
            return vector
        except concurrent.futures.TimeoutError:
            got.degraded = f"query encoding took longer than {self.settings.encode_timeout}s"
        except (EncoderError, OSError, RuntimeError) as e:
            got.degraded = f"query encoder failed: {e}"
        return None

    def _requests(self, understood: Understood, text: str, depth: int, filters: list[dict], boosts: list[dict],
                  vector: list[float] | None, personal_ids: list[str], shopper: Shopper | None,
                  fetch: dict, knn_depth: int) -> dict[str, tuple]:
        """The named requests of one search, ``name: (index or None for the live one, body)``, in ``_msearch`` order
        (``fetch``: what each candidate brings, the live index's ``Live.fetch.body``; ``knn_depth``: k of k-NN)."""
        named = {"bm25": (None, bm25_body(text, depth, filters, boosts, fields=self.text_fields,
                                          tie_breaker=self.settings.text_tie_breaker, fuzzy=self.fuzzy, fetch=fetch))}
        if vector is not None:
            named["knn"] = (None, knn_body(vector, knn_depth, knn_depth, filters, fetch=fetch))
        if understood.browse:
            named["popular"] = (None, popular_body(depth, filters, fetch=fetch))
        if personal_ids:
            named["personal"] = (None, personal_body(text, personal_ids, filters, not understood.browse,
                                                     fields=self.text_fields, fetch=fetch))
        elif shopper is not None and shopper.own_items:
            named["personal"] = (None, personal_lookup_body(text, self.settings.profiles_index, shopper.profile_doc,
                                                            filters, not understood.browse, fields=self.text_fields,
                                                            fetch=fetch))
        if shopper is not None:
            named["profile"] = (self.settings.profiles_index, profile_body(shopper.profile_doc))
        return named

    def _run(self, named: dict[str, tuple], got: Retrieved, live: Live) -> None:
        """Run the requests in one ``_msearch`` and read their candidates (and the profile) into ``got``."""
        lines = []
        for where, body in named.values():
            lines += [{"index": where or live.index}, body]
        responses = dict(zip(named, self.client.msearch(body=lines)["responses"]))
        for name, response in responses.items():
            if "error" not in response:
                continue
            error = response["error"]
            reason = error.get("reason", error) if isinstance(error, dict) else error
            if name == "knn":
                got.degraded = f"k-NN search failed: {reason}"
            elif name in ("profile", "personal") and _no_profiles_index(error):
                continue  # no profile was ever stored: a cold start, not a failure
            elif response.get("status") in (429, 503):  # the cluster is busy or still starting: try again
                raise SearchError(f"OpenSearch cannot answer now ({reason}); try again shortly", 503,
                                  "opensearch_unavailable")
            else:
                raise SearchError(f"OpenSearch rejected the query: {reason}", 502, "upstream_error")
        hits = {name: r["hits"]["hits"] for name, r in responses.items() if "error" not in r}
        found = hits.pop("profile", [])
        got.profile = found[0]["_source"] if found else None
        read = {name: [(live.fetch.read(h), h) for h in found] for name, found in hits.items()}
        got.sources = {d: source for found in read.values() for (d, source), _ in found}
        got.bm25, got.knn = ([(d, h["_score"]) for (d, _), h in read.get(name, [])] for name in ("bm25", "knn"))
        got.popular = [(d, float(source.get("popularity_norm") or 0.0)) for (d, source), _ in read.get("popular", [])]
        got.personal = [(d, h["_score"]) for (d, _), h in read.get("personal", [])]


def _no_profiles_index(error) -> bool:
    """Whether an ``_msearch`` error says the profiles index does not exist (no profile stored yet)."""
    text = str(error)
    return "index_not_found_exception" in text
