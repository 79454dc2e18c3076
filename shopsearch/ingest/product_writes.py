"""A shop's own writes of products (the pass-through's ``_doc``, ``_create``, ``_update`` and
``_bulk`` lines on a catalogue), applied as an ingest would apply them.

A catalogue's document is what ingest made of a product: cleaned fields, numbers scaled with the
version's stored scales (``*_norm``), derived fields (``category``, ``category_path``,
``attribute_text``, ``content_hash``, the title column) and vectors, which the mapping keeps out of
the stored ``_source`` (``index/vectors.py``). Forwarded as is, a shop's ``PUT <catalogue>/_doc/1``
would store a product without any of them (found by its words only, never by k-NN), and an
``_update`` would drop the vectors of the product it changes, since the update API rebuilds a
document from its ``_source``. So such writes are applied here instead:

* a **whole product** (``_doc``, ``_create``) is cleaned by the ingest rules (a bad record is a
  :class:`~shopsearch.errors.Rejected` naming its reason, and nothing is written), scaled, encoded
  on the workers and written, as ``shopsearch ingest`` does for one item; one whose content and
  model are those of the stored copy keeps its vectors and is not encoded again;
* a **change** (``_update`` with ``doc``) is merged into the product as ingest made it (``product_rules.source_item``),
  cleaned and scaled again; the stored vectors are kept when the encoded text (:func:`item_text`)
  and the image are unchanged, else it is encoded again. The other fields keep their values:
  popularity counted from events, duplicate groups, ``in_stock``.

Every write of a product that was there is conditional on the copy read (``if_seq_no``, on the
workers too when it is encoded), so a write meanwhile (an ingest, a popularity count, another
change) is never overwritten with an older copy: the write is read, decided and applied again.
A ``_create`` writes only a product that is still not there.

``in_stock`` is the one field ingest does not make and a shop writes: a boolean, kept as written.
A write through a catalogue's alias also reaches the versions an ingest would
(:func:`~shopsearch.ingest.pipeline.versions_following`), each with its own vectors and scales.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Sequence

from opensearchpy import NotFoundError, OpenSearch, helpers

from shopsearch.errors import AlreadyExists, ConcurrentChange, Missing, Rejected, ServiceError, ShopsearchError
from shopsearch.index.vectors import READ_BATCH, mapped_derived_fields, with_vectors
from shopsearch.ingest.pipeline import Runner, chunk_payloads, versions_following
from shopsearch.ingest.product_rules import (as_written, changed_product, check_writable, clean_product,
                                             kept_document, needs_encoding, unchanged, with_kept)

ATTEMPTS = 5  # reads and conditional writes of one change before ConcurrentChange
CHUNK = 256   # products per encode chunk, as ingest cuts them

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """What one write did to one index version: OpenSearch's answer fields, and whether it encoded."""
    index: str
    id: str
    result: str            # created, updated, noop (deleted, not_found: a bulk's delete)
    version: int | None = None
    seq_no: int | None = None
    primary_term: int | None = None
    encoded: bool = False
    status: int | None = None   # a bulk item's HTTP status (None: 201 when created, else 200)

    def as_opensearch(self) -> dict:
        """The answer OpenSearch's document APIs give (``_index``, ``_id``, ``_version``, ``result`` ...)."""
        out = {"_index": self.index, "_id": self.id, "_version": self.version, "result": self.result,
               "status": self.status or (201 if self.result == "created" else 200),
               "_shards": {"total": 1, "successful": 1, "failed": 0} if self.result != "noop" else
               {"total": 0, "successful": 0, "failed": 0}}
        if self.seq_no is not None:
            out.update(_seq_no=self.seq_no, _primary_term=self.primary_term)
        return out


@dataclass(frozen=True)
class Write:
    """One product write of a request: the catalogue (alias or version) it names, the product id
    (None: the body's ``id``, else a new one), the fields, and whether it is a change, a create or
    a delete (a bulk's ``delete`` line, applied in its turn among the product's other writes)."""
    name: str
    id: str | None
    fields: dict
    change: bool = False
    create: bool = False
    delete: bool = False


@dataclass(frozen=True)
class Refused:
    """A write that was not applied, and the error that says why (nothing of it was written)."""
    index: str
    id: str
    error: ShopsearchError

    def as_opensearch(self) -> dict:
        """A refused item as OpenSearch's bulk answer shows one."""
        return {"_index": self.index, "_id": self.id, "status": self.error.status,
                "error": {"type": getattr(self.error, "reason", None) or self.error.code, "reason": str(self.error)}}


def product_index(client: OpenSearch, name: str) -> tuple[str, dict] | None:
    """``(version, its mapping)`` when ``name`` is a catalogue version or a catalogue's alias over
    one (a mapping whose ``_meta`` records the model its vectors come from), else None."""
    try:
        found = client.indices.get_mapping(index=name)
    except NotFoundError:
        return None
    if len(found) != 1:
        return None
    (index, mapping), = found.items()
    mapping = mapping.get("mappings", {})
    if "model_version" not in mapping.get("_meta", {}) or "fused_vector" not in mapping.get("properties", {}):
        return None
    return index, mapping


def write_products(client: OpenSearch, runner: Runner, writes: Sequence[Write], refresh: bool = False
                   ) -> list[Written | Refused]:
    """Apply ``writes`` in order, one answer each, for the index each names (its alias's live version,
    or the version named); through an alias they reach the versions an ingest would too. A write
    that cannot be applied is :class:`Refused` with its reason and the others go on, as in a bulk.

    The writes are read in one ``mget`` per index; those that keep their vectors are written in one
    conditional bulk, those that need vectors go to the workers as ingest chunks. A product named
    twice is written in two rounds, so the second write reads the first one's result."""
    answers: list[Written | Refused | None] = [None] * len(writes)
    resolved: dict[str, list[str] | None] = {}  # name -> the versions it writes into, the named one first
    by_index: dict[str, list[tuple[int, str, Write]]] = {}
    for position, w in enumerate(writes):
        doc_id = w.id or (str(w.fields["id"]) if w.fields.get("id") not in (None, "") else uuid.uuid4().hex)
        try:
            check_writable(w.fields, doc_id)
            if w.name not in resolved:
                found = product_index(client, w.name)
                resolved[w.name] = None if found is None else [found[0]] + (
                    versions_following(client, w.name, found[0]) if found[0] != w.name else [])
            if resolved[w.name] is None:
                raise Missing(f"{w.name} is not a catalogue's product index", field="index")
        except ShopsearchError as e:
            answers[position] = Refused(w.name, doc_id, e)
            continue
        for k, target in enumerate(resolved[w.name]):
            # the named version answers; a following one's outcome is only logged (negative positions)
            by_index.setdefault(target, []).append((position if k == 0 else -1 - position, doc_id, w))
    for index, ops in by_index.items():
        for batch in _rounds(ops):
            for position, answer in _apply(client, runner, index, batch).items():
                if position >= 0:
                    answers[position] = answer
                elif isinstance(answer, Refused):
                    log.warning("a product write did not reach the following version %s: %s", index, answer.error)
        if refresh:
            client.indices.refresh(index=index)
    if any(a is None for a in answers):
        raise ServiceError("a product write came back without an outcome; send the writes again")
    return answers


def _rounds(ops: list[tuple[int, str, Write]]) -> list[list[tuple[int, str, Write]]]:
    """The ops cut into rounds in which each product comes once, in order (pure).

    >>> [[o[1] for o in r] for r in _rounds([(0, "a", None), (1, "b", None), (2, "a", None)])]
    [['a', 'b'], ['a']]
    """
    rounds: list[list] = []
    seen: dict[str, int] = {}
    for op in ops:
        k = seen[op[1]] = seen.get(op[1], -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(op)
    return rounds


def _apply(client: OpenSearch, runner: Runner, index: str, ops: list[tuple[int, str, Write]]
           ) -> dict[int, Written | Refused]:
    """One round of writes into one version (each product once): read, decide, write; 409s read again."""
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
    out: dict[int, Written | Refused] = {}
    if "scales" not in meta:
        refusal = Missing(f"{index} has no products yet (no scales to scale a price with): ingest the catalogue "
                          "first (shopsearch ingest)", field="index")
        return {position: Refused(index, doc_id, refusal) for position, doc_id, _ in ops}
    scales, version = meta["scales"], meta["model_version"]
    rating_scale = float(scales.get("rating", {}).get("hi") or 5.0)
    missing = {"vector_copy", "title_column"} - mapped_derived_fields(client, index)
    pending = ops
    # writes the workers answered 409: maybe their own write, when a worker retried a chunk it had
    # partly written (a 503 mid-chunk), so a product found as that write asked is its answer
    retried: set[int] = set()
    for _ in range(ATTEMPTS):
        got = _read(client, index, [doc_id for _, doc_id, _ in pending])
        keep, encode = [], []
        for position, doc_id, w in pending:
            found = got.get(doc_id, {})
            stored = with_vectors(found["_source"]) if found.get("found") else None
            if (position in retried and w.create and stored is not None
                    and as_written(stored, w.fields, doc_id, scales, rating_scale)):
                out[position] = Written(index, doc_id, "created", found["_version"], found["_seq_no"],
                                        found["_primary_term"], encoded=True)
                continue
            try:
                item = None if w.delete else _decide(stored, w, doc_id, index, scales, rating_scale)
            except ShopsearchError as e:
                out[position] = Refused(index, doc_id, e)
                continue
            if w.delete:
                keep.append((position, doc_id, w, {"_op_type": "delete", "_index": index, "_id": doc_id}))
            elif w.change and unchanged(stored, item, w.fields):
                out[position] = Written(index, doc_id, "updated" if position in retried else "noop",
                                        found["_version"], found["_seq_no"], found["_primary_term"],
                                        encoded=position in retried)
            elif needs_encoding(stored, item, version):
                encode.append((position, doc_id, w, item, found if stored is not None else None))
            else:  # conditional on the copy read
                doc = {k: v for k, v in kept_document(stored, item, version).items() if k not in missing}
                keep.append((position, doc_id, w, {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc,
                                                   "if_seq_no": found["_seq_no"],
                                                   "if_primary_term": found["_primary_term"]}))
        conflicts = []
        results = helpers.streaming_bulk(client, [a for *_, a in keep], raise_on_error=False, raise_on_exception=True,
                                         max_retries=3) if keep else ()
        for (position, doc_id, w, _), (ok, result) in zip(keep, results):
            info = next(iter(result.values()), {})
            if ok or (w.delete and info.get("status") == 404):
                out[position] = Written(index, doc_id, info.get("result") or "updated", info.get("_version"),
                                        info.get("_seq_no"), info.get("_primary_term"), status=info.get("status"))
            elif info.get("status") == 409:
                conflicts.append((position, doc_id, w))  # written since our read: apply the write to that copy
            else:
                out[position] = Refused(index, doc_id, _refusal(info, doc_id))
        if encode:
            written, changed = _encode_and_write(client, runner, index, meta, encode)
            out.update(written)
            conflicts += changed
            retried.update(position for position, _, _ in changed)
        pending = conflicts
        if not pending:
            return out
    for position, doc_id, _ in pending:
        out[position] = Refused(index, doc_id, ConcurrentChange(
            f"product {doc_id!r} of {index} kept changing under {ATTEMPTS} attempts to write it; send it again"))
    return out


def _read(client: OpenSearch, index: str, ids: list[str], source: bool = True) -> dict[str, dict]:
    """``{id: mget answer}`` of products (realtime, with ``_seq_no``), read in batches."""
    return {d["_id"]: d for start in range(0, len(ids), READ_BATCH)
            for d in client.mget(index=index, body={"ids": ids[start:start + READ_BATCH]}, _source=source)["docs"]}


def _decide(stored: dict | None, w: Write, doc_id: str, index: str, scales: dict, rating_scale: float) -> dict:
    """The clean, scaled item a write leaves, or the error that refuses it."""
    if w.change and stored is None:
        raise Missing(f"product {doc_id!r} is not in {index}: a change needs the product (write it whole with "
                      "PUT .../_doc/<id>)", field="id")
    if w.create and stored is not None:
        raise AlreadyExists(f"product {doc_id!r} is already in {index}", field="id")
    if w.change:
        return changed_product(stored, w.fields, scales, rating_scale)
    return with_kept(stored, clean_product({**w.fields, "id": doc_id}, scales, rating_scale), w.fields)


def _encode_and_write(client: OpenSearch, runner: Runner, index: str, meta: dict,
                      encode: list[tuple[int, str, Write, dict, dict | None]]
                      ) -> tuple[dict[int, Written | Refused], list[tuple[int, str, Write]]]:
    """Encode items on the workers and write them, as ingest chunks, each conditional on the copy
    read (``found``; None: the product was not there, and a ``_create`` writes only if it still
    is not); ``(answers by position, the writes whose product was written meanwhile)``, which the
    caller reads and decides again."""
    conditions = {item["id"]: [found["_seq_no"], found["_primary_term"]] if found else None
                  for _, _, w, item, found in encode if found or w.create}
    payloads = chunk_payloads([item for *_, item, _ in encode], index, meta["model"],
                              meta.get("projection", {}).get("path"), CHUNK, keep_stored=False,  # kept above
                              conditions=conditions)
    failed = {f["id"]: f for outcome in runner.encode_and_write(payloads) for f in outcome["failures"]}
    ids = [item["id"] for *_, item, _ in encode if item["id"] not in failed]
    now = _read(client, index, ids, source=False)
    out: dict[int, Written | Refused] = {}
    changed = []
    for position, doc_id, w, item, found in encode:
        if item["id"] in conditions and failed.get(item["id"], {}).get("status") == 409:
            changed.append((position, doc_id, w))  # written meanwhile: read and decided again (a _create is then refused)
        elif item["id"] in failed:
            out[position] = Refused(index, item["id"], _refusal(failed[item["id"]], item["id"]))
        else:
            d = now.get(item["id"], {})
            out[position] = Written(index, item["id"], "updated" if found else "created", d.get("_version"),
                                    d.get("_seq_no"), d.get("_primary_term"), encoded=True)
    return out, changed


def _refusal(info: dict, doc_id: str) -> ShopsearchError:
    """The error of a bulk item OpenSearch (or a worker) refused: a 4xx is the product's, anything else the service's."""
    status = info.get("status")
    if isinstance(status, int) and 400 <= status < 500:
        return Rejected("write_refused", f"OpenSearch refused product {doc_id!r} ({status}): {info.get('error')}")
    return ServiceError(f"product {doc_id!r} could not be encoded and written: {info.get('error')} (one that timed "
                        "out may still be written when the workers take it: read it back before sending it again)")
