"""Index stage: bulk-write documents the opensearch-py way (chunked by count and bytes, retrying
429 and connection errors, failures reported item by item)."""

from __future__ import annotations

import time

from opensearchpy import OpenSearch, helpers

INDEXED_FIELDS = ("id", "title", "description", "brand", "colour", "material", "gender", "attributes",
                  "price", "price_norm", "rating", "rating_norm", "popularity", "popularity_norm",
                  "in_stock", "image", "flags", "duplicate_group", "content_hash")


def document(item: dict, text_vec, image_vec, fused_vec, has_image: bool, model_version: str) -> dict:
    """The OpenSearch document of one clean, normalised, encoded item (pure); derived: category, attribute text."""
    doc = {k: item[k] for k in INDEXED_FIELDS if item.get(k) not in (None, "", [], {})}
    path = item.get("category_path") or []
    if path:
        doc["category"] = path[-1]
        doc["category_path"] = [" > ".join(path[:n]) for n in range(1, len(path) + 1)]
    doc.update(has_image=bool(has_image), model_version=model_version,
               indexed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               text_vector=[float(x) for x in text_vec], fused_vector=[float(x) for x in fused_vec])
    if has_image:
        doc["image_vector"] = [float(x) for x in image_vec]
    words = attribute_text(item.get("attributes") or {})
    if words:
        doc["attribute_text"] = words
    return doc


def attribute_text(attributes: dict) -> str:
    """The searchable words of an item's attributes: every value with a letter in it (a year or a count is not).

    ``attributes`` is a ``flat_object``, matched only as whole keywords; this text field lets BM25
    match "sports" in fashion's ``usage`` = "Sports".

    >>> attribute_text({"season": "Summer", "year": "2012", "usage": "Sports"})
    'Summer Sports'
    """
    values = [str(v) for v in attributes.values() if not isinstance(v, (dict, list))]
    return " ".join(v for v in values if any(c.isalpha() for c in v))


def write_documents(client: OpenSearch, index: str, docs: list[dict]) -> tuple[int, list[dict]]:
    """Bulk-index ``docs`` (``_id`` = catalogue id); returns (indexed count, per-item failures)."""
    actions = ({"_op_type": "index", "_index": index, "_id": d["id"], "_source": d} for d in docs)
    indexed, failures = 0, []
    for ok, result in helpers.streaming_bulk(client, actions, chunk_size=500, max_chunk_bytes=20 * 1024 * 1024,
                                             raise_on_error=False, raise_on_exception=True, max_retries=5,
                                             initial_backoff=1, max_backoff=30):
        if ok:
            indexed += 1
        else:
            info = result.get("index", {})
            failures.append({"id": info.get("_id"), "status": info.get("status"), "error": info.get("error")})
    return indexed, failures


def existing_hashes(client: OpenSearch, index: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{id: (content_hash, model_version)}`` of the documents already in the index."""
    if not ids:
        return {}
    found = client.mget(index=index, body={"ids": ids}, _source_includes=["content_hash", "model_version"])
    return {d["_id"]: (d["_source"].get("content_hash"), d["_source"].get("model_version"))
            for d in found["docs"] if d.get("found")}
