"""A shop's own writes of single products (the pass-through's ``_doc``, ``_create`` and ``_update``
on a catalogue), applied as an ingest would apply them.

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
* a **change** (``_update`` with ``doc``) is merged into the product as ingest made it (:func:`source_item`),
  cleaned and scaled again; the stored vectors are kept when the encoded text (:func:`item_text`)
  and the image are unchanged, else it is encoded again. The other fields keep their values:
  popularity counted from events, duplicate groups, ``in_stock``. The write is conditional on the
  copy read (``if_seq_no``), so an ingest meanwhile is never overwritten with an older copy.

``in_stock`` is the one field ingest does not make and a shop writes: a boolean, kept as written.
A write through a catalogue's alias also reaches the versions an ingest would
(:func:`~shopsearch.ingest.pipeline.versions_following`), each with its own vectors and scales.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Sequence

from opensearchpy import ConflictError, NotFoundError, OpenSearch

from shopsearch.encoders.text import item_text
from shopsearch.errors import AlreadyExists, ConcurrentChange, Missing, Rejected, ServiceError
from shopsearch.index.vectors import mapped_derived_fields, vector_copy, with_vectors
from shopsearch.ingest.clean import clean_item
from shopsearch.ingest.normalise import fit_catalogue_scales, normalise_item
from shopsearch.ingest.pipeline import Runner, chunk_payloads, versions_following
from shopsearch.ingest.write import document

# what a shop may write of a product: the canonical fields of a source item, and in_stock
SOURCE_FIELDS = ("id", "title", "description", "brand", "category_path", "price", "rating", "popularity", "image",
                 "colour", "material", "gender", "attributes")
SHOP_FIELDS = ("in_stock",)
WRITABLE = SOURCE_FIELDS + SHOP_FIELDS
# what a change keeps of the stored product unless it names the field itself
KEPT_UNLESS_CHANGED = {"popularity": ("popularity", "popularity_norm"), "in_stock": ("in_stock",)}
KEPT = ("duplicate_group",)
# what JSON a written field may hold (bool is an int to Python: only in_stock takes one)
_SCALAR = ((str, int, float), "a string or a number")
KINDS = {"in_stock": (bool, "true or false"), "attributes": (dict, "an object"),
         "category_path": ((str, list), "a list of strings or one 'A > B' string")}
ATTEMPTS = 5  # reads and conditional writes of one change before ConcurrentChange


@dataclass(frozen=True)
class Written:
    """What one write did to one index version: OpenSearch's answer fields, and whether it encoded."""
    index: str
    id: str
    result: str            # created, updated, noop
    version: int | None = None
    seq_no: int | None = None
    primary_term: int | None = None
    encoded: bool = False

    def as_opensearch(self) -> dict:
        """The answer OpenSearch's document APIs give (``_index``, ``_id``, ``_version``, ``result`` ...)."""
        out = {"_index": self.index, "_id": self.id, "_version": self.version, "result": self.result,
               "_shards": {"total": 1, "successful": 1, "failed": 0} if self.result != "noop" else
               {"total": 0, "successful": 0, "failed": 0}}
        if self.seq_no is not None:
            out.update(_seq_no=self.seq_no, _primary_term=self.primary_term)
        return out


# --- the pure core ----------------------------------------------------------------------------

def check_writable(fields: dict, doc_id: str | None) -> None:
    """Refuse a body that writes what shopsearch derives, or names another product (pure).

    >>> check_writable({"price": 3, "in_stock": False}, "7")
    >>> check_writable({"price_norm": 0.2}, "7")
    Traceback (most recent call last):
    ...
    shopsearch.errors.Rejected: not_writable: price_norm is not a product field a shop writes (shopsearch derives it, or it is unknown); a product has: id, title, description, brand, category_path, price, rating, popularity, image, colour, material, gender, attributes, in_stock
    >>> check_writable({"id": "8"}, "7")
    Traceback (most recent call last):
    ...
    shopsearch.errors.Rejected: id_mismatch: the body's id '8' is not the document id '7'
    >>> check_writable({"title": ["Mug"]}, "7")
    Traceback (most recent call last):
    ...
    shopsearch.errors.Rejected: bad_title: title must be a string or a number or null, not ['Mug']
    """
    for name in fields:
        if name not in WRITABLE:
            raise Rejected("not_writable", f"{name} is not a product field a shop writes (shopsearch derives it, "
                                           f"or it is unknown); a product has: {', '.join(WRITABLE)}")
    if doc_id is not None and fields.get("id") not in (None, doc_id) and str(fields["id"]) != doc_id:
        raise Rejected("id_mismatch", f"the body's id {fields['id']!r} is not the document id {doc_id!r}")
    for name, value in fields.items():
        kinds, said = KINDS.get(name, _SCALAR)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and name != "in_stock")
                                  or not _parts_are_text(value)):
            raise Rejected(f"bad_{name}", f"{name} must be {said} or null, not {value!r}"[:300])


def _parts_are_text(value) -> bool:
    return not isinstance(value, list) or all(isinstance(part, str) for part in value)


def source_item(stored: dict) -> dict:
    """The source item a stored product was made from (pure): what :func:`~shopsearch.ingest.write.document` read.

    >>> source_item({"id": "1", "title": "Mug", "category": "Cups", "category_path": ["Kitchen", "Kitchen > Cups"],
    ...              "price": 4.5, "price_norm": 0.1, "fused_vector": [1.0]})["category_path"]
    ['Kitchen', 'Cups']
    """
    item = {name: stored.get(name) for name in SOURCE_FIELDS}
    path = stored.get("category_path") or []
    item["category_path"] = path[-1].split(" > ") if path else []
    item["attributes"] = stored.get("attributes") or {}
    return item


def _category_path(value) -> list:
    """A written category path: a list of parts, or one ``A > B`` string."""
    return [p.strip() for p in value.split(">")] if isinstance(value, str) else value


def clean_product(fields: dict, scales: dict, rating_scale: float) -> dict:
    """The clean, scaled item of a written product (pure), or :class:`Rejected` with the ingest rule's reason."""
    source = {**fields, "id": None if fields.get("id") is None else str(fields["id"]),
              "category_path": _category_path(fields.get("category_path")), "rating_scale": rating_scale}
    cleaned = clean_item(source)
    if cleaned.item is None:
        raise Rejected(cleaned.reason or "rejected", cleaned.detail or "")
    item = normalise_item(cleaned.item, scales)
    if "in_stock" in fields and fields["in_stock"] is not None:
        item["in_stock"] = fields["in_stock"]
    return item


def needs_encoding(stored: dict | None, item: dict, model_version: str) -> bool:
    """Whether ``item`` needs vectors of its own: no stored copy with this index's model, or another
    encoded text or image than the stored copy's (pure).

    >>> stored = {"id": "1", "title": "Mug", "model_version": "m@1", "fused_vector": [1.0]}
    >>> needs_encoding(stored, {"id": "1", "title": "Mug", "price": 3.0}, "m@1")
    False
    >>> needs_encoding(stored, {"id": "1", "title": "Big mug"}, "m@1"), needs_encoding(None, {"title": "Mug"}, "m@1")
    (True, True)
    """
    if stored is None or stored.get("model_version") != model_version or "fused_vector" not in stored:
        return True
    before = source_item(stored)
    return item_text(item) != item_text(before) or (item.get("image") or None) != (before.get("image") or None)


def kept_document(stored: dict, item: dict, model_version: str) -> dict:
    """The document of ``item`` with the stored copy's vectors (pure; ``stored`` read with its vectors)."""
    has_image = bool(stored.get("has_image"))
    fused = stored["fused_vector"]
    doc = document({**item, "flags": item.get("flags") or []}, stored.get("text_vector", fused),
                   stored.get("image_vector", [0.0] * len(fused)), fused, has_image, model_version)
    doc["vector_copy"] = vector_copy(doc)
    return doc


def changed_product(stored: dict, changes: dict, scales: dict, rating_scale: float) -> dict:
    """The clean, scaled item of a stored product after a change (pure): the fields the change names
    replace the stored ones; event popularity, ``in_stock`` and the duplicate group stay unless named.

    >>> stored = {"id": "1", "title": "Mug", "price": 4.0, "popularity": 9, "popularity_norm": 0.4, "in_stock": True}
    >>> scales = fit_catalogue_scales([{"price": 1.0}, {"price": 100.0}])
    >>> item = changed_product(stored, {"price": "3.50"}, scales, 5.0)
    >>> item["price"], item["popularity_norm"], item["in_stock"], item["title"]
    (3.5, 0.4, True, 'Mug')
    """
    item = clean_product({**source_item(stored), **changes}, scales, rating_scale)
    for name, kept in KEPT_UNLESS_CHANGED.items():
        if name not in changes:
            item.update({k: stored[k] for k in kept if k in stored})
    item.update({k: stored[k] for k in KEPT if k in stored})
    return item


def unchanged(stored: dict, item: dict, changes: dict) -> bool:
    """Whether a change leaves every field it names as stored (the update API's no-op), pure.

    >>> unchanged({"id": "1", "price": 3.5, "category_path": ["A", "A > B"]}, {"price": 3.5, "category_path": ["A", "B"]},
    ...           {"price": "3.50", "category_path": "A > B"})
    True
    """
    before = {**source_item(stored), **{k: stored.get(k) for k in SHOP_FIELDS}}
    return all(before.get(k) == item.get(k) for k in changes if k != "id")


# --- the writes ---------------------------------------------------------------------------------

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


def write_product(client: OpenSearch, runner: Runner, name: str, doc_id: str | None, fields: dict, *,
                  change: bool = False, create: bool = False, refresh: bool = False) -> list[Written]:
    """Write one product (``fields``: the whole product, or with ``change`` the fields it changes) into
    the catalogue ``name`` names, and through an alias into the versions an ingest would reach too;
    the first of the answers is the one ``name`` names. Raises :class:`Rejected` (a field no ingest
    accepts), :class:`Missing` (a change of a product that is not there), :class:`AlreadyExists`."""
    check_writable(fields, doc_id)
    found = product_index(client, name)
    if found is None:
        raise Missing(f"{name} is not a catalogue's product index", field="index")
    index, _ = found
    doc_id = doc_id or (str(fields["id"]) if fields.get("id") not in (None, "") else uuid.uuid4().hex)
    fields = {**fields, "id": doc_id} if not change else fields
    targets = [index] + (versions_following(client, name, index) if index != name else [])
    return [_write_one(client, runner, target, doc_id, fields, change, create, refresh) for target in targets]


def _write_one(client: OpenSearch, runner: Runner, index: str, doc_id: str, fields: dict, change: bool,
               create: bool, refresh: bool) -> Written:
    meta = client.indices.get_mapping(index=index)[index]["mappings"].get("_meta", {})
    if "scales" not in meta:
        raise Missing(f"{index} has no products yet (no scales to scale a price with): ingest the catalogue "
                      "first (shopsearch ingest)", field="index")
    scales, version = meta["scales"], meta["model_version"]
    rating_scale = float(scales.get("rating", {}).get("hi") or 5.0)
    for _ in range(ATTEMPTS):
        try:
            got = client.get(index=index, id=doc_id)
            stored = with_vectors(got["_source"])
        except NotFoundError:
            got, stored = None, None
        if change and stored is None:
            raise Missing(f"product {doc_id!r} is not in {index}: a change needs the product (write it whole "
                          "with PUT .../_doc/<id>)", field="id")
        if create and stored is not None:
            raise AlreadyExists(f"product {doc_id!r} is already in {index}", field="id")
        item = changed_product(stored, fields, scales, rating_scale) if change else \
            clean_product(fields, scales, rating_scale)
        if change and unchanged(stored, item, fields):
            return Written(index, doc_id, "noop", got["_version"], got["_seq_no"], got["_primary_term"])
        if needs_encoding(stored, item, version):
            return _encode_and_write(client, runner, index, meta, item, stored is None, refresh)
        doc = kept_document(stored, item, version)
        missing = {"vector_copy", "title_column"} - mapped_derived_fields(client, index)
        doc = {k: v for k, v in doc.items() if k not in missing}
        try:
            r = client.index(index=index, id=doc_id, body=doc, if_seq_no=got["_seq_no"],
                             if_primary_term=got["_primary_term"], refresh="true" if refresh else "false")
        except ConflictError:
            continue  # written since our read (an ingest, another change): apply the change to that copy
        return Written(index, doc_id, r["result"], r["_version"], r["_seq_no"], r["_primary_term"])
    raise ConcurrentChange(f"product {doc_id!r} of {index} kept changing under {ATTEMPTS} attempts to write it; "
                           "send it again")


def _encode_and_write(client: OpenSearch, runner: Runner, index: str, meta: dict, item: dict, new: bool,
                      refresh: bool) -> Written:
    """Encode one item on the workers and write it, as an ingest chunk of one."""
    payloads = chunk_payloads([item], index, meta["model"], meta.get("projection", {}).get("path"), 1)
    outcomes: Sequence[dict] = list(runner.encode_and_write(payloads))
    failures = [f for o in outcomes for f in o["failures"]]
    if failures or not any(o["indexed"] for o in outcomes):
        reason = failures[0].get("error") if failures else "no outcome from the workers"
        raise ServiceError(f"product {item['id']!r} could not be encoded and written into {index}: {reason}")
    if refresh:
        client.indices.refresh(index=index)
    got = client.get(index=index, id=item["id"], _source=False)
    return Written(index, item["id"], "created" if new else "updated", got["_version"], got["_seq_no"],
                   got["_primary_term"], encoded=True)
