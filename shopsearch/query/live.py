"""The live-index registry: which index answers a catalogue's searches, and what it was built with.

A catalogue's alias is resolved at most once a second; when it has moved to another version,
the caches of the old one are emptied (nothing cached for it may answer). An index whose text
vectors do not fit its encoder is refused when it goes live here. A pinned version (to evaluate
a candidate index) is resolved by name, whatever the alias says.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

from opensearchpy import NotFoundError, OpenSearch

from shopsearch.encoders.text import resolve_model_path, text_encoder
from shopsearch.errors import EncoderError, MappingError, SearchError
from shopsearch.index.fetch import Fetch, source_fetch
from shopsearch.index.mapping import check_text_dimension
from shopsearch.index.versions import live_index
from shopsearch.query.build import fetch_for
from shopsearch.query.spelling import Speller, count_words, words
from shopsearch.query.understand import Facets
from shopsearch.settings import Settings

FACET_FIELDS = ("colour", "brand", "gender", "category")
# the keyword fields whose words make a catalogue's spelling vocabulary
VOCABULARY_FIELDS = ("title.raw", "brand", "colour", "material", "category", "category_path", "gender")


@dataclass
class Live:
    """One index version answering a catalogue: its name, ``_meta`` (model, version), facets, and how its hits
    bring their fields (``fetch``: doc values where its mapping keeps them exactly, ``build.fetch_for``)."""
    index: str
    meta: dict
    facets: Facets
    checked: float = field(default_factory=time.monotonic)
    speller: Speller | None = None     # typo_tolerance=spelling: built once per index version
    fetch: Fetch = field(default_factory=source_fetch)


def encoder_for(settings: Settings, meta: dict):
    """The query encoder of the model recorded in an index's ``_meta`` (loaded once per process)."""
    return text_encoder(settings.replace(text_model=meta.get("model", settings.text_model)), queries=True)


class LiveIndexes:
    """The catalogues' live (and pinned) index versions of one process.

    ``caches`` are emptied whenever a catalogue's alias moves.
    """

    def __init__(self, client: OpenSearch, settings: Settings, caches: Iterable = ()):
        self.client, self.settings = client, settings
        self.caches = list(caches)
        self._live: dict[str, Live] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # one load of a catalogue's version at a time

    def live(self, catalogue: str) -> Live:
        """The catalogue's live version (the alias re-read at most once a second).

        Loading a version (its mapping, facets and speller: seconds on a large catalogue) happens
        once: searches that arrive meanwhile wait for that load instead of starting their own.
        """
        cached = self._live.get(catalogue)
        if cached and time.monotonic() - cached.checked < 1.0:
            return cached
        index = live_index(self.client, catalogue)
        if index is None:
            raise SearchError(f"catalogue {catalogue!r} has no live index", 404, "not_found")
        if cached and cached.index == index:
            cached.checked = time.monotonic()
            return cached
        with self._lock:
            loading = self._loading.setdefault(catalogue, threading.Lock())
        with loading:
            done = self._live.get(catalogue)
            if done is not None and done.index == index:  # loaded while this search waited
                return done
            live = self._load(index)
            with self._lock:
                if cached is not None:  # the alias moved: nothing cached for the old version may answer
                    for cache in self.caches:
                        cache.clear()
                self._live[catalogue] = live
        return live

    def pinned(self, catalogue: str, index: str) -> Live:
        """A given version of a catalogue, whatever the alias says (to evaluate a candidate index)."""
        if not index.startswith(f"{catalogue}-v") or not self.client.indices.exists(index=index):
            raise SearchError(f"{index} is not a version of {catalogue}", 404, "not_found")
        key = f"{catalogue}@{index}"
        if key not in self._live:
            self._live[key] = self._load(index)
        return self._live[key]

    def _load(self, index: str) -> Live:
        mapping = self.client.indices.get_mapping(index=index)[index]["mappings"]
        self.check_dimensions(index, mapping)
        meta = mapping.get("_meta", {})
        speller = self._speller(index, meta.get("catalogue", "")) if self.settings.typo_tolerance == "spelling" else None
        fetch = fetch_for(mapping.get("properties", {}), self.settings.response_fields)
        return Live(index, meta, self._facets(index), speller=speller, fetch=fetch)

    def check_dimensions(self, index: str, mapping: dict) -> None:
        """Refuse an index whose vectors do not fit its encoder (checked when a version goes live here)."""
        try:
            encoder = encoder_for(self.settings, mapping.get("_meta", {}))
        except (EncoderError, OSError):
            return  # no encoder: queries degrade to BM25, which needs no vectors
        try:
            check_text_dimension(index, mapping, encoder.name, encoder.dimension)
        except MappingError as e:
            raise SearchError(str(e), 409, "model_mismatch") from None

    def _facets(self, index: str) -> Facets:
        aggs = {f: {"terms": {"field": f, "size": 300}} for f in FACET_FIELDS}
        found = self.client.search(index=index, body={"size": 0, "aggs": aggs})["aggregations"]
        return Facets.from_values(**{f: [b["key"] for b in found[f]["buckets"]] for f in aggs})

    def _speller(self, index: str, catalogue: str) -> Speller:
        """The spelling vocabulary of an index version: its words, and the catalogue's query log.

        Words are counted over the distinct values of keyword fields (doc values, paged with a
        composite aggregation), never from ``_source``, which holds the vectors.
        """
        values: list[str] = []
        weights: list[int] = []
        for name in VOCABULARY_FIELDS:
            after = None
            while True:
                composite = {"size": 10000, "sources": [{"v": {"terms": {"field": name}}}]}
                if after:
                    composite["after"] = after
                found = self.client.search(index=index, body={"size": 0, "aggs": {"c": {"composite": composite}}})
                agg = found["aggregations"]["c"]
                values += [b["key"]["v"] for b in agg["buckets"]]
                weights += [b["doc_count"] for b in agg["buckets"]]
                after = agg.get("after_key")
                if not agg["buckets"] or not after:
                    break
        queries = self._query_log_counts(catalogue) if self.settings.spelling_query_log and catalogue else {}
        return Speller.from_counts(count_words(values, weights), queries, self.settings.spelling_max_edits,
                                   self.settings.spelling_min_length, self._dictionary(index))

    def _dictionary(self, index: str) -> frozenset[str]:
        """Whole words of the text model's vocabulary (its ``vocab.txt``): words of the language, not typos."""
        meta = self.client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
        try:
            vocab = resolve_model_path(meta.get("model") or self.settings.text_model) / "vocab.txt"
        except EncoderError:
            return frozenset()
        if not vocab.is_file():
            return frozenset()
        with open(vocab, encoding="utf-8") as f:
            return frozenset(w for w in (line.strip() for line in f) if len(w) >= 4 and w.isalpha() and w.islower())

    def _query_log_counts(self, catalogue: str) -> dict[str, int]:
        """How often each word was searched in the catalogue (``ubi_queries``; none yet: empty)."""
        body = {"size": 0, "query": {"term": {"catalogue": catalogue}},
                "aggs": {"q": {"terms": {"field": "user_query", "size": 20000}}}}
        try:
            buckets = self.client.search(index=self.settings.ubi_queries_index, body=body)["aggregations"]["q"]["buckets"]
        except NotFoundError:
            return {}
        counts: dict[str, int] = {}
        for b in buckets:
            for w in set(words(b["key"])):
                counts[w] = counts.get(w, 0) + b["doc_count"]
        return counts

