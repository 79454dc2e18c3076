"""The pure rules of a shop's product writes (``ingest/product_writes.py`` applies them): which
fields a shop writes and of what JSON kind, how a written product or a change is cleaned and
scaled as ingest would, what it keeps of the stored copy, and whether it needs encoding again."""

from __future__ import annotations

from shopsearch.encoders.text import item_text
from shopsearch.errors import Rejected
from shopsearch.ingest.clean import clean_item
from shopsearch.ingest.normalise import fit_catalogue_scales, normalise_item
from shopsearch.ingest.write import document, item_from_document

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
    """The source fields of a stored product (pure): what a shop wrote, or ingest read, to make it.

    >>> source_item({"id": "1", "title": "Mug", "category": "Cups", "category_path": ["Kitchen", "Kitchen > Cups"],
    ...              "price": 4.5, "price_norm": 0.1, "fused_vector": [1.0]})
    {'id': '1', 'title': 'Mug', 'price': 4.5, 'category_path': ['Kitchen', 'Cups'], 'attributes': {}}
    """
    item = {k: v for k, v in item_from_document(stored).items() if k in SOURCE_FIELDS}
    return {**item, "attributes": item.get("attributes") or {}}


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
    return document({**item, "flags": item.get("flags") or []}, stored.get("text_vector", fused),
                    stored.get("image_vector", [0.0] * len(fused)), fused, has_image, model_version)


def changed_product(stored: dict, changes: dict, scales: dict, rating_scale: float) -> dict:
    """The clean, scaled item of a stored product after a change (pure): the fields the change names
    replace the stored ones; event popularity, ``in_stock`` and the duplicate group stay unless named.

    >>> stored = {"id": "1", "title": "Mug", "price": 4.0, "popularity": 9, "popularity_norm": 0.4, "in_stock": True}
    >>> scales = fit_catalogue_scales([{"price": 1.0}, {"price": 100.0}])
    >>> item = changed_product(stored, {"price": "3.50"}, scales, 5.0)
    >>> item["price"], item["popularity_norm"], item["in_stock"], item["title"]
    (3.5, 0.4, True, 'Mug')
    """
    item = with_kept(stored, clean_product({**source_item(stored), **changes}, scales, rating_scale), changes)
    return {**item, **{k: stored[k] for k in KEPT if k in stored}}


def with_kept(stored: dict | None, item: dict, named: dict) -> dict:
    """``item`` with the stored copy's event popularity and ``in_stock`` where the write does not name them (pure).

    >>> with_kept({"in_stock": False, "popularity": 3}, {"id": "1"}, {"title": "Mug"})
    {'id': '1', 'popularity': 3, 'in_stock': False}
    >>> with_kept({"in_stock": False}, {"id": "1"}, {"in_stock": None})
    {'id': '1'}
    """
    for name, kept in KEPT_UNLESS_CHANGED.items():
        if stored is not None and name not in named:
            item = {**item, **{k: stored[k] for k in kept if k in stored}}
    return item


def unchanged(stored: dict, item: dict, changes: dict) -> bool:
    """Whether a change leaves every field it names as stored (the update API's no-op), pure.

    >>> unchanged({"id": "1", "price": 3.5, "category_path": ["A", "A > B"]}, {"price": 3.5, "category_path": ["A", "B"]},
    ...           {"price": "3.50", "category_path": "A > B"})
    True
    """
    before = {**source_item(stored), **{k: stored.get(k) for k in SHOP_FIELDS}}
    return all(before.get(k) == item.get(k) for k in changes if k != "id")


def as_written(stored: dict, fields: dict, doc_id: str, scales: dict, rating_scale: float) -> bool:
    """Whether the stored product is what a whole write of ``fields`` asks for (every field it
    names, cleaned and scaled), pure; a write the rules refuse never is.

    >>> scales = fit_catalogue_scales([{"price": 1.0}, {"price": 100.0}])
    >>> as_written({"id": "1", "title": "Drill", "price": 3.5}, {"title": "Drill", "price": "3.50"}, "1", scales, 5.0)
    True
    >>> as_written({"id": "1", "title": "Drill"}, {"title": "Hammer"}, "1", scales, 5.0)
    False
    >>> as_written({"id": "1", "title": "Drill"}, {"title": "Drill", "price": -3}, "1", scales, 5.0)
    False
    """
    try:
        return unchanged(stored, clean_product({**fields, "id": doc_id}, scales, rating_scale), fields)
    except Rejected:
        return False
