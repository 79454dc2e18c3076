"""Product vectors in a document: indexed in the k-NN fields, kept compactly in ``vector_copy``.

A search's fetch phase reads every hit's stored ``_source``. With the three vectors in it as JSON
arrays (384 floats each, ~8 KB of text apiece) that read dominated a search for 100 candidates:
on Home Depot (54,667 products) a BM25 request for 100 hits took 13.9 ms against 4.8 ms for the
same index without vectors in ``_source`` (docs/ARCHITECTURE.md). So the products mapping keeps
``*_vector`` out of the stored ``_source`` (``"_source": {"excludes": ["*_vector"]}``); they are
indexed as before. What the few readers that need a product's vectors use instead (a reindex
with the same model, verification, "similar items", a shopper profile's mean vector) is
``vector_copy``: the same float32 values, base64-packed, in ``binary`` fields (neither indexed
nor in doc values: a quarter of the JSON's size, one string to skip when parsing).

Why not read the vectors back from the k-NN fields: OpenSearch 2.19's doc values of a
``knn_vector`` read through ``script_fields`` hand back another document's vector for all but
some hits (k-NN issue #1878's family; measured here on ``homedepot-v1``), and ``docvalue_fields``
refuses the type.

The same exclusion makes OpenSearch's update API unsafe for products: an update (``_update``, a
``_bulk`` ``update`` action, ``_update_by_query``) rebuilds the document from its stored
``_source`` and indexes that, so the k-NN fields are gone and the product drops out of every
vector search. Partial changes to products go through :func:`update_keeping_vectors`, which
writes each whole document again with its vectors.

An index version made before this layout still holds the JSON arrays in ``_source`` and has no
``vector_copy`` field: :func:`with_vectors` reads either, and the writer leaves ``vector_copy``
out for it (:func:`mapped_derived_fields`), as it leaves out the title column (``index/fetch.py``)
for a version made before that.

>>> doc = {"title": "Mug", "vector_copy": {"fused": pack_vector([0.5, -1.0])}}
>>> with_vectors(doc)
{'title': 'Mug', 'fused_vector': [0.5, -1.0]}
>>> with_vectors({"title": "Mug", "fused_vector": [0.25]})
{'title': 'Mug', 'fused_vector': [0.25]}
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

import numpy as np
from opensearchpy import OpenSearch, helpers

from shopsearch.errors import ConcurrentChange, ServiceError

COPY_FIELD = "vector_copy"
VECTOR_FIELDS = ("fused_vector", "text_vector", "image_vector")
# what a reader of a document's other fields leaves out of ``_source``
NO_VECTORS = ["*_vector", COPY_FIELD]
SOURCE_WITHOUT_VECTORS = {"excludes": NO_VECTORS}  # a request's ``_source`` that fetches everything else
READ_BATCH = 500
# the title as binary doc values, kept out of ``_source`` like the vectors: what a search's candidates
# read their title from (``index/fetch.py`` says why)
TITLE_COLUMN = "title_column"


def title_column(title: str) -> str:
    """The value a document carries in :data:`TITLE_COLUMN` for ``title`` (pure).

    >>> title_column("Mug 杯"), read_text_column(title_column("Mug 杯"))
    ('TXVnIOadrw==', 'Mug 杯')
    """
    return base64.b64encode(title.encode("utf-8")).decode("ascii")


def read_text_column(value: str) -> str:
    """The text a binary doc value holds: ``docvalue_fields`` gives it as base64 without its padding.

    >>> read_text_column("TXVn"), read_text_column("TXVnIOadrw")
    ('Mug', 'Mug 杯')
    """
    return binascii.a2b_base64(value + "=" * (-len(value) % 4)).decode("utf-8")  # ~200 a search: no b64decode wrapper


# the fields a document carries beside what it was given, for newer index versions only
DERIVED_FIELDS = (COPY_FIELD, TITLE_COLUMN)
_mapped: dict[str, frozenset[str]] = {}  # index -> the DERIVED_FIELDS it maps, once it maps them all


def pack_vector(vector) -> str:
    """One vector as base64 of its float32 values (exact for the float32 vectors the encoders give)."""
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def unpack_vector(data: str) -> list[float]:
    """The vector :func:`pack_vector` packed.

    >>> unpack_vector(pack_vector([0.1, 2.0])) == [float(np.float32(0.1)), 2.0]
    True
    """
    return np.frombuffer(base64.b64decode(data), dtype=np.float32).tolist()


def is_vector_field(name: str) -> bool:
    """Whether a ``_source`` key holds vectors (a k-NN field, or their copy).

    >>> [is_vector_field(n) for n in ("fused_vector", "vector_copy", "title")]
    [True, True, False]
    """
    return name.endswith("_vector") or name == COPY_FIELD


def without_vectors(source: dict) -> dict:
    """A ``_source`` without any vector: what a reader of the other fields, or a shopper, gets."""
    return {k: v for k, v in source.items() if not is_vector_field(k)}


def vector_copy(doc: dict) -> dict:
    """The ``vector_copy`` of a document's vectors (the ones it has)."""
    return {name.removesuffix("_vector"): pack_vector(doc[name]) for name in VECTOR_FIELDS if doc.get(name)}


def with_vectors(source: dict) -> dict:
    """A stored ``_source`` with its vectors as lists (from ``vector_copy``, or an older version's JSON arrays)."""
    out = {k: v for k, v in source.items() if k != COPY_FIELD}
    for short, data in (source.get(COPY_FIELD) or {}).items():
        if data:
            out[f"{short}_vector"] = unpack_vector(data)
    return out


def mapped_derived_fields(client: OpenSearch, index: str) -> frozenset[str]:
    """Which of :data:`DERIVED_FIELDS` ``index`` (a version or an alias) maps: a version made before
    one of them existed lacks it, and its strict mapping refuses a document that carries it."""
    found = _mapped.get(index)
    if found is None:
        mappings = client.indices.get_mapping(index=index)
        found = frozenset(f for f in DERIVED_FIELDS
                          if mappings and all(f in m["mappings"].get("properties", {}) for m in mappings.values()))
        if found == frozenset(DERIVED_FIELDS) and list(mappings) == [index]:
            _mapped[index] = found  # a version's layout never changes (an alias may move to an older one)
    return found


def with_derived_fields(doc: dict, source: dict, mapped: frozenset[str]) -> dict:
    """``doc`` (read back from ``source``, a stored ``_source``) with the derived fields its index
    maps and ``_source`` leaves out: ``vector_copy`` as stored, the title column made again."""
    if COPY_FIELD in mapped and COPY_FIELD in source:
        doc[COPY_FIELD] = source[COPY_FIELD]
    if TITLE_COLUMN in mapped and doc.get("title"):
        doc[TITLE_COLUMN] = title_column(doc["title"])
    return doc


def read_with_vectors(client: OpenSearch, index: str, ids: list[str], fields: list[str] | None = None) -> dict[str, dict]:
    """``{id: source with vectors}`` of the given documents that ``index`` holds (realtime ``mget``);
    ``fields``: only those (vectors included by name), else everything."""
    ids, found = list(dict.fromkeys(ids)), {}
    wanted = None if fields is None else [f for f in fields if f not in VECTOR_FIELDS] + [COPY_FIELD] + [
        f for f in fields if f in VECTOR_FIELDS]
    for start in range(0, len(ids), READ_BATCH):
        kwargs = {} if wanted is None else {"_source_includes": wanted}
        docs = client.mget(index=index, body={"ids": ids[start:start + READ_BATCH]}, **kwargs)["docs"]
        found.update({d["_id"]: with_vectors(d.get("_source") or {}) for d in docs if d.get("found")})
    if fields is not None:
        found = {i: {k: v for k, v in d.items() if k in fields} for i, d in found.items()}
    return found


def scan_with_vectors(client: OpenSearch, index: str, query: dict | None = None, size: int = 500) -> Iterator[dict]:
    """Every hit of ``query`` on ``index`` (a scroll), each ``_source`` with its vectors (:func:`with_vectors`)."""
    for hit in helpers.scan(client, index=index, query={"query": query or {"match_all": {}}}, size=size):
        yield {**hit, "_source": with_vectors(hit.get("_source") or {})}


def update_keeping_vectors(client: OpenSearch, index: str, changes: dict[str, dict], attempts: int = 5,
                           refresh: bool = False) -> int:
    """Apply ``changes`` (``{id: {field: value}}``) to the documents of ``index`` that exist, keeping
    their vectors; returns how many were changed (a missing id is skipped, and so is a document that
    already holds the values: nothing is written for it, as the update API's no-op detection does).

    Each document is read (``vector_copy`` unpacked into its k-NN fields), changed and indexed
    whole, on the condition that nobody wrote it since the read (``if_seq_no``): a document an
    ingest rewrote meanwhile is read again and changed on top of the newer copy, up to ``attempts``
    times (then :class:`ConcurrentChange`). Any other refusal raises :class:`ServiceError` naming it.
    """
    pending, changed = dict(changes), 0
    mapped = mapped_derived_fields(client, index)
    for _ in range(attempts):
        if not pending:
            break
        actions = []
        ids = sorted(pending)
        for start in range(0, len(ids), READ_BATCH):
            for d in client.mget(index=index, body={"ids": ids[start:start + READ_BATCH]})["docs"]:
                if not d.get("found"):
                    pending.pop(d["_id"], None)
                    continue
                source = d.get("_source") or {}
                if all(source.get(k) == v for k, v in pending[d["_id"]].items()):
                    pending.pop(d["_id"])
                    continue
                doc = with_derived_fields({**with_vectors(source), **pending[d["_id"]]}, source, mapped)
                actions.append({"_op_type": "index", "_index": d["_index"], "_id": d["_id"], "_source": doc,
                                "if_seq_no": d["_seq_no"], "if_primary_term": d["_primary_term"]})
        for ok, result in helpers.streaming_bulk(client, actions, chunk_size=READ_BATCH, raise_on_error=False,
                                                 raise_on_exception=True, max_retries=3):
            info = result.get("index", {})
            if ok:
                changed += 1
                pending.pop(info.get("_id"), None)
            elif info.get("status") != 409:  # 409: written since our read; read it again
                raise ServiceError(f"{index}: OpenSearch refused to rewrite document {info.get('_id')} "
                                   f"({info.get('status')}: {info.get('error')}); the documents before it were written")
    if pending:
        raise ConcurrentChange(f"{index}: {len(pending)} documents kept changing under {attempts} attempts to "
                               f"update them (first: {sorted(pending)[0]}; the others were written); run it again")
    if refresh:
        client.indices.refresh(index=index)
    return changed
