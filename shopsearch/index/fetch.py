"""How a search's hits bring their fields: from doc values where the mapping keeps every value exactly, else ``_source``.

Reading a hit's stored fields (its ``_id`` and ``_source``) decompresses the stored-fields
block that holds the document: about 40 µs a hit on this 2-core machine, so the 100 BM25 and
100 k-NN candidates of one hybrid search spent more time being fetched (~8 ms) than found.
Doc values are columnar and cost a few µs a hit. :func:`plan_fetch` reads an index version's
mapping once and decides, for the fields a search wants (what the result list shows plus what
ranking reads), whether every one of them has an exact doc-value column:

* ``keyword`` without a normalizer (``id``, ``image``, ``flags``), or a keyword sub-field
  ``raw`` of a text or normalised keyword field (``title.raw``, ``brand.raw``: the value as
  ingested, not lower-cased), whose ``ignore_above`` keeps every value ingest accepts
  (:data:`MAX_KEYWORD_CHARS`);
* ``boolean``, the integer types, ``double`` and ``float`` (a float's doc value is the float32
  widened to a double, 19.989999771118164: a shown float is given back as the shortest decimal
  that float32 stores, 19.99, which is what ``_source`` held whenever it fit a float32).

The title is the exception among strings: a keyword's doc values keep each distinct value once,
in a terms dictionary compressed in blocks, so reading a title back decompresses a block per hit;
with ~55,000 distinct titles that was a third of a hybrid search's ``_msearch`` (2.19 against
1.45 ms without it, on 400 captured Home Depot searches). So a products version also keeps the
title as ``binary`` doc values, stored as written (``title_column``: base64 of its UTF-8 in the
document, ``index/vectors.py``; written by ``ingest/write.py``, kept out of ``_source``), and the
plan reads the title from there where the mapping has it (``title.raw`` otherwise, an older version).

When one wanted field has no such column (a text field without ``raw``, a date, an index made
before the ``raw`` sub-fields), the whole search reads ``_source`` as before
(:attr:`Fetch.from_source`). Doc values give a field's values sorted and without repeats:
single values come back as scalars, and the fields a document holds as lists
(:data:`LIST_FIELDS`: ``category_path`` is stored top level first, which sorts the same) as lists.

>>> props = {"id": {"type": "keyword"}, "price": {"type": "float"},
...          "title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 8191}}}}
>>> plan = plan_fetch(props, ["title", "price"], shown=["title", "price"])
>>> plan.body["docvalue_fields"]
['id', 'price', 'title.raw']
>>> plan.read({"_score": 1.0, "fields": {"id": ["7"], "price": [19.989999771118164], "title.raw": ["Mug"]}})
('7', {'id': '7', 'price': 19.99, 'title': 'Mug'})
>>> plan_fetch(props, ["title", "description"]).from_source
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np

from shopsearch.index.vectors import SOURCE_WITHOUT_VECTORS, TITLE_COLUMN, read_text_column

# the longest keyword value ingest accepts (``ingest/clean.py`` refuses longer ones): Lucene's
# term limit is 32,766 bytes, four UTF-8 bytes a character at most, so ``ignore_above`` 8191
# indexes every accepted value and a missing doc value always means a missing field
MAX_KEYWORD_CHARS = 8191
LIST_FIELDS = frozenset({"category_path", "flags"})   # fields a product document holds as lists
RAW_SUBFIELD = "raw"
EXACT_TYPES = frozenset({"boolean", "long", "integer", "short", "byte", "double", "float"})
# how many distinct shown floats (prices, ratings) a process keeps converted: a shop's prices repeat
# (19.99, 24.95), and a search shows the price and rating of ~200 candidates
SHOWN_FLOATS_CACHE = 65_536


def shown_float(value: float) -> float:
    """The shortest decimal the float32 ``value`` holds, as ``_source`` gave it (pure).

    >>> shown_float(19.989999771118164), shown_float(649.0), shown_float(-0.0)
    (19.99, 649.0, -0.0)
    """
    # 0.0 and -0.0 are one key to a cache, and NaN is never found in one: both are converted directly
    return _shown_float(value) if value and value == value else float(value)


@functools.lru_cache(maxsize=SHOWN_FLOATS_CACHE)
def _shown_float(value: float) -> float:
    return float(str(np.float32(value)))


@dataclass(frozen=True)
class Column:
    """One field read from doc values: its name in the hit's source, the doc-value path, how to give it back."""
    name: str
    path: str
    as_float32: bool = False   # a float field the result list shows: the shortest decimal of its float32
    as_list: bool = False
    as_text: bool = False      # binary doc values holding UTF-8 text (TITLE_COLUMN)


@dataclass(frozen=True)
class Fetch:
    """The part of every candidate request that says what a hit brings, and how to read a hit back.

    ``body``: ``{"_source": filter}`` (``columns`` empty) or ``{"_source": False, "stored_fields":
    "_none_", "docvalue_fields": [...]}``.
    """
    body: dict
    columns: tuple[Column, ...] = ()

    @cached_property
    def _plain(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.path, c.name) for c in self.columns)

    @cached_property
    def _lists(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.path, c.name) for c in self.columns if c.as_list)

    @cached_property
    def _floats(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.as_float32)

    @cached_property
    def _texts(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.as_text)

    @property
    def from_source(self) -> bool:
        """Whether hits bring their stored ``_source`` (no exact doc-value column for some wanted field)."""
        return not self.columns

    def read(self, hit: dict) -> tuple[str, dict]:
        """``(id, fields)`` of one hit, the fields as ``_source`` would have given them."""
        if not self.columns:
            return hit["_id"], hit.get("_source", {})
        values = hit.get("fields", {})
        # a hit reads ~14 columns and a search ~200 hits: one comprehension, then the few exceptions
        source = {name: found[0] if len(found) == 1 else found for path, name in self._plain if (found := values.get(path))}
        for path, name in self._lists:
            if name in source:
                source[name] = values[path]
        for name in self._texts:
            if name in source:
                source[name] = read_text_column(source[name])
        for name in self._floats:
            value = source.get(name)
            if value is not None:
                source[name] = shown_float(value) if not isinstance(value, list) else [shown_float(v) for v in value]
        return source["id"], source


def source_fetch(source: dict | None = None) -> Fetch:
    """Hits that bring ``_source`` (``source``: its filter; default every field but the vectors)."""
    return Fetch({"_source": source or SOURCE_WITHOUT_VECTORS})


def doc_value_path(name: str, properties: dict) -> tuple[str, str] | None:
    """``(path, type)`` of the exact doc-value column of a top-level field, or None (pure).

    >>> doc_value_path("brand", {"brand": {"type": "keyword", "normalizer": "facet",
    ...                                    "fields": {"raw": {"type": "keyword", "ignore_above": 8191}}}})
    ('brand.raw', 'keyword')
    >>> doc_value_path("title", {"title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 512}}}})
    >>> doc_value_path("title", {"title": {"type": "text"}, "title_column": {"type": "binary", "doc_values": True}})
    ('title_column', 'binary')
    """
    mapping = properties.get(name)
    if mapping is None:
        return None
    if name == "title" and properties.get(TITLE_COLUMN, {}).get("type") == "binary" \
            and properties[TITLE_COLUMN].get("doc_values") is True:
        return TITLE_COLUMN, "binary"
    if _exact(mapping):
        return name, mapping.get("type", "")
    raw = mapping.get("fields", {}).get(RAW_SUBFIELD)
    if raw is not None and raw.get("type") == "keyword" and _exact(raw):
        return f"{name}.{RAW_SUBFIELD}", "keyword"
    return None


def _exact(mapping: dict) -> bool:
    """Whether a field's doc values hold every value exactly as ingested."""
    kind = mapping.get("type")
    if mapping.get("doc_values") is False:
        return False
    if kind == "keyword":
        return "normalizer" not in mapping and int(mapping.get("ignore_above", MAX_KEYWORD_CHARS)) >= MAX_KEYWORD_CHARS
    return kind in EXACT_TYPES


def plan_fetch(properties: dict, wanted: Iterable[str] | None, shown: Iterable[str] | None = None,
               source: dict | None = None) -> Fetch:
    """How hits bring the ``wanted`` fields of an index with mapping ``properties`` (pure).

    ``wanted`` None (every field) or a field without an exact doc-value column: ``_source``
    (with ``source`` as its filter). ``shown``: the fields a result list shows (their floats are
    given back as decimals; ranking reads the rest as they are). ``id`` is always read.
    """
    if wanted is None:
        return source_fetch(source)
    shown_set = set(shown or ())
    columns = []
    for name in sorted(set(wanted) | {"id"}):
        found = doc_value_path(name, properties)
        if found is None:
            return source_fetch(source)
        path, kind = found
        columns.append(Column(name, path, as_float32=kind == "float" and name in shown_set, as_list=name in LIST_FIELDS,
                              as_text=kind == "binary"))
    body = {"_source": False, "stored_fields": "_none_", "docvalue_fields": [c.path for c in columns]}
    return Fetch(body, tuple(columns))
