"""Index stage: bulk-write documents the opensearch-py way (chunked by count and bytes, retrying
429 and connection errors, failures reported item by item).

Every document keeps a compact copy of its vectors in ``vector_copy``: the mapping leaves the
``*_vector`` fields out of the stored ``_source`` (``index/vectors.py`` says why). Its title is
also written as binary doc values (``title_column``, out of ``_source`` too), which a search's
candidates read it from (``index/fetch.py``).

A document carries ``text_vector`` only where it differs from ``fused_vector``, i.e. for items
with a readable image: without one the fused vector *is* the text vector (``ingest/fuse.py``),
and a second copy would double the HNSW graph OpenSearch builds for every item of an image-less
catalogue (measured: 2.3 against 1.0 ms of OpenSearch CPU per document, `bench ingest`).
"""

from __future__ import annotations

import time

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import RequestError

from shopsearch.index.fetch import shown_float
from shopsearch.index.vectors import (COPY_FIELD, DERIVED_FIELDS, TITLE_COLUMN, mapped_derived_fields, title_column,
                                      vector_copy, without_vectors)
from shopsearch.ingest.encode import unpack

INDEXED_FIELDS = ("id", "title", "description", "brand", "colour", "material", "gender", "attributes",
                  "price", "price_norm", "rating", "rating_norm", "popularity", "popularity_norm",
                  "in_stock", "image", "flags", "duplicate_group", "content_hash")
LOOKUP_FIELDS = ("content_hash", "model_version")


def document(item: dict, text_vec, image_vec, fused_vec, has_image: bool, model_version: str) -> dict:
    """The OpenSearch document of one clean, normalised, encoded item (pure); derived: category, attribute text.

    >>> sorted(k for k in document({"id": "1", "title": "Mug"}, [1.0], [0.0], [1.0], False, "m@1") if k.endswith("_vector"))
    ['fused_vector']
    >>> sorted(k for k in document({"id": "1", "title": "Mug"}, [1.0], [0.0], [0.8], True, "m@1") if k.endswith("_vector"))
    ['fused_vector', 'image_vector', 'text_vector']
    """
    doc = {k: item[k] for k in INDEXED_FIELDS if item.get(k) not in (None, "", [], {})}
    path = item.get("category_path") or []
    if path:
        doc["category"] = path[-1]
        doc["category_path"] = [" > ".join(path[:n]) for n in range(1, len(path) + 1)]
    doc.update(has_image=bool(has_image), model_version=model_version,
               indexed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               fused_vector=[float(x) for x in fused_vec])
    if has_image:
        doc["text_vector"] = [float(x) for x in text_vec]
        doc["image_vector"] = [float(x) for x in image_vec]
    words = attribute_text(item.get("attributes") or {})
    if words:
        doc["attribute_text"] = words
    doc[COPY_FIELD] = vector_copy(doc)  # the vectors a reader gets back (they are not in the stored _source)
    if doc.get("title"):
        doc[TITLE_COLUMN] = title_column(doc["title"])  # what a search's candidates read their title from
    return doc


# fields that document() derives or that describe the old encoding, not the item
DERIVED = {"category", "category_path", "has_image", "model_version", "indexed_at", "attribute_text", TITLE_COLUMN}


def item_from_document(source: dict) -> dict:
    """The clean, normalised item an indexed document was written from (inverse of ``document()``).

    >>> item_from_document({"id": "1", "title": "Mug", "category": "Cups", "category_path": ["Home", "Home > Cups"],
    ...                     "flags": ["image_unreadable"], "image": "/i/1.jpg", "text_vector": [0.1]})
    {'id': '1', 'title': 'Mug', 'flags': [], 'image': '/i/1.jpg', 'category_path': ['Home', 'Cups']}
    """
    item = {k: v for k, v in without_vectors(source).items() if k not in DERIVED}
    parts, before = [], None
    for prefix in source.get("category_path") or []:  # "A", "A > B", ... -> "A", "B", ...
        parts.append(prefix if before is None else prefix[len(before) + 3:])
        before = prefix
    item["category_path"] = parts
    if item.get("image"):  # the encoder flags an unreadable image again; a flag from cleaning (no image) stays
        item["flags"] = [f for f in item.get("flags", []) if f != "image_unreadable"]
    return item


def attribute_text(attributes: dict) -> str:
    """The searchable words of an item's attributes: every value with a letter in it (a year or a count is not).

    ``attributes`` is a ``flat_object``, matched only as whole keywords; this text field lets BM25
    match "sports" in fashion's ``usage`` = "Sports".

    >>> attribute_text({"season": "Summer", "year": "2012", "usage": "Sports"})
    'Summer Sports'
    """
    values = [str(v) for v in attributes.values() if not isinstance(v, (dict, list))]
    return " ".join(v for v in values if any(c.isalpha() for c in v))


# what a stored product keeps when an ingest writes it again without naming it: in_stock, which
# only a shop writes (through the pass-through, ingest/product_writes.py), and the popularity counted
# from events (learn/popularity.py), which the next count would restore only minutes later
KEPT_ACROSS_INGEST = (("in_stock",), ("popularity", "popularity_norm"))
KEPT_LOOKUP_BATCH = 5000  # ids per doc-value lookup, below max_result_window


def with_kept_fields(docs: list[dict], stored: dict[str, dict]) -> list[dict]:
    """``docs`` with the :data:`KEPT_ACROSS_INGEST` fields of their stored copies where they name none
    of a group's fields (pure).

    >>> with_kept_fields([{"id": "1", "title": "Mug"}, {"id": "2", "title": "Cup", "popularity": 1.0}],
    ...                  {"1": {"in_stock": False, "popularity": 7.0, "popularity_norm": 0.5}, "2": {"popularity": 9.0}})
    [{'id': '1', 'title': 'Mug', 'in_stock': False, 'popularity': 7.0, 'popularity_norm': 0.5}, {'id': '2', 'title': 'Cup', 'popularity': 1.0}]
    """
    out = []
    for doc in docs:
        kept = stored.get(doc["id"], {})
        for group in KEPT_ACROSS_INGEST:
            if not any(name in doc for name in group):
                doc = {**doc, **{name: kept[name] for name in group if name in kept}}
        out.append(doc)
    return out


def stored_kept_fields(client: OpenSearch, index: str, ids: list[str]) -> dict[str, dict]:
    """``{id: {field: value}}`` of the :data:`KEPT_ACROSS_INGEST` fields the stored copies hold (doc values)."""
    names = [name for group in KEPT_ACROSS_INGEST for name in group]
    out = {}
    for start in range(0, len(ids), KEPT_LOOKUP_BATCH):
        block = ids[start:start + KEPT_LOOKUP_BATCH]
        body = {"size": len(block), "_source": False, "docvalue_fields": names, "track_total_hits": False,
                "query": {"ids": {"values": block}}}
        for hit in client.search(index=index, body=body)["hits"]["hits"]:
            fields = hit.get("fields", {})
            out[hit["_id"]] = {name: shown_float(v) if isinstance(v := fields[name][0], float) else v
                               for name in names if fields.get(name)}
    return out


def write_documents(client: OpenSearch, index: str, docs: list[dict], op_type: str = "index",
                    conditions: dict[str, list[int] | None] | None = None) -> tuple[int, list[dict]]:
    """Bulk-index ``docs`` (``_id`` = catalogue id); returns (indexed count, per-item failures).

    ``conditions``: ``{id: [seq_no, primary_term]}``: those documents are written only over that
    copy (``if_seq_no``); ``{id: None}``: only if there is none yet (``create``); one changed or
    created meanwhile is a failure with status 409.

    ``op_type="create"`` (a copy of another version) leaves a document already there as it is
    (an ingest wrote a newer one meanwhile): its 409 is neither indexed nor a failure.

    A bulk request OpenSearch refuses as a whole (400: one document's id over 512 bytes fails
    the request's validation, not just its own item) is split in halves until the documents at
    fault stand alone: they are reported with OpenSearch's reason, the others are indexed.
    """
    # a version made before vector_copy (its vectors stay in _source) or the title column lacks them
    missing = set(DERIVED_FIELDS) - mapped_derived_fields(client, index) if docs else set()
    if missing:
        docs = [{k: v for k, v in d.items() if k not in missing} for d in docs]
    conditions = conditions or {}
    actions = ({"_op_type": op_type, "_index": index, "_id": d["id"], "_source": d, **_condition(conditions, d["id"])}
               for d in docs)
    indexed, failures, answered = 0, [], 0
    try:
        for ok, result in helpers.streaming_bulk(client, actions, chunk_size=500, max_chunk_bytes=20 * 1024 * 1024,
                                                 raise_on_error=False, raise_on_exception=True, max_retries=5,
                                                 initial_backoff=1, max_backoff=30):
            answered += 1
            if ok:
                indexed += 1
            else:
                info = next(iter(result.values()), {})
                if op_type == "create" and info.get("status") == 409:
                    continue
                failures.append({"id": info.get("_id"), "status": info.get("status"), "error": info.get("error")})
    except RequestError as e:
        rest = docs[answered:]  # every item before the refused request was answered
        if len(rest) == 1:
            return indexed, failures + [{"id": rest[0]["id"], "status": e.status_code, "error": _reason(e)}]
        for half in (rest[:len(rest) // 2], rest[len(rest) // 2:]):
            n, more = write_documents(client, index, half, op_type, conditions)
            indexed, failures = indexed + n, failures + more
    return indexed, failures


def _condition(conditions: dict[str, list[int] | None], doc_id: str) -> dict:
    """A bulk action's condition (see :func:`write_documents`), pure.

    >>> _condition({"a": [7, 1], "b": None}, "a"), _condition({"a": [7, 1], "b": None}, "b"), _condition({}, "c")
    ({'if_seq_no': 7, 'if_primary_term': 1}, {'_op_type': 'create'}, {})
    """
    if doc_id not in conditions:
        return {}
    found = conditions[doc_id]
    return {"_op_type": "create"} if found is None else {"if_seq_no": found[0], "if_primary_term": found[1]}


def _reason(error: RequestError):
    info = error.info if isinstance(error.info, dict) else {}
    return info.get("error") or str(error)


def encoded_documents(encoded: dict) -> list[dict]:
    """The documents of one encoded chunk (the output of ``ingest.encode.encode_chunk``), pure."""
    v, dim = encoded["vectors"], encoded["vectors"]["dim"]
    text, image, fused = unpack(v["text"], dim), unpack(v["image"], dim), unpack(v["fused"], dim)
    return [document({**item, "flags": v["flags"][k]}, text[k], image[k], fused[k], v["has_image"][k],
                     encoded["model_version"]) for k, item in enumerate(encoded["items"])]


def write_chunk(client: OpenSearch, encoded: dict) -> dict:
    """Bulk-write one encoded chunk; returns its outcome: counts, per-item failures, unreadable images.

    A product already stored keeps its :data:`KEPT_ACROSS_INGEST` fields, unless the chunk says
    its items carry what they keep (``keep_stored`` false: a shop's own write, which decided it)."""
    docs = encoded_documents(encoded)
    if encoded.get("keep_stored", True):
        docs = with_kept_fields(docs, stored_kept_fields(client, encoded["index"], [d["id"] for d in docs]))
    indexed, failures = write_documents(client, encoded["index"], docs, conditions=encoded.get("conditions"))
    flags = encoded["vectors"]["flags"]
    return {"chunk": encoded["chunk"], "indexed": indexed, "failures": failures,
            "image_unreadable": [i["id"] for i, f in zip(encoded["items"], flags) if "image_unreadable" in f]}


def failed_chunk(payload: dict, error: BaseException) -> dict:
    """The outcome of a chunk whose encode or write failed as a whole: every item reported failed.

    >>> failed_chunk({"chunk": 3, "items": [{"id": "a"}, {"id": "b"}]}, TimeoutError("bulk timed out"))["failures"]
    [{'id': 'a', 'status': None, 'error': 'TimeoutError: bulk timed out'}, {'id': 'b', 'status': None, 'error': 'TimeoutError: bulk timed out'}]
    """
    reason = f"{type(error).__name__}: {error}"
    return {"chunk": payload["chunk"], "indexed": 0, "image_unreadable": [],
            "failures": [{"id": i["id"], "status": None, "error": reason} for i in payload["items"]]}


def existing_hashes(client: OpenSearch, index: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{id: (content_hash, model_version)}`` of the documents already in the index.

    Read from doc values (``docvalue_fields`` of an ``ids`` query, no ``_source``): an ``mget``
    with ``_source_includes`` makes OpenSearch load and parse each stored ``_source``, vectors and
    all, to pick two short keywords out of it.
    """
    if not ids:
        return {}
    body = {"size": len(ids), "_source": False, "docvalue_fields": list(LOOKUP_FIELDS), "track_total_hits": False,
            "query": {"ids": {"values": ids}}}
    hits = client.search(index=index, body=body)["hits"]["hits"]
    out = {}
    for hit in hits:
        fields = hit.get("fields", {})
        out[hit["_id"]] = tuple((fields.get(name) or [None])[0] for name in LOOKUP_FIELDS)
    return out
