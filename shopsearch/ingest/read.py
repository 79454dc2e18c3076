"""Catalogue stage of ingest: read a shop's file and map its columns onto canonical fields.

Ingest flows catalogue -> clean -> normalise -> encode -> fuse -> index; this module is the
first step. Readers stream ``(line_number, raw_record)`` pairs and never drop or raise on a
bad line: it comes out as an error record (``{"__unparseable__": raw, "__error__": why}``) so
that the clean stage can reject it with a reason. :func:`apply_field_map` turns one raw record
into a *source item* with canonical keys, still unparsed (prices stay strings, HTML stays
HTML); cleaning is the next stage's job.

Nothing here talks to OpenSearch, Celery or a model: plain functions on plain data.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator
from shopsearch.errors import InputError

UNPARSEABLE = "__unparseable__"
ERROR = "__error__"
FORMATS = ("jsonl", "csv", "tsv")


@dataclass(frozen=True)
class Join:
    """A side table keyed by product id, e.g. Home Depot ``colors.tsv`` (product_uid -> color).

    ``file`` is relative to the catalogue file's directory; ``key`` and ``value`` are its
    columns; the value lands in the virtual column ``into``. Several rows for one product are
    joined as their unique values, in file order, with ", ".
    """

    file: str
    key: str
    value: str
    into: str


@dataclass(frozen=True)
class Lookup:
    """A code table, e.g. Instacart ``aisles.tsv`` (aisle_id -> aisle).

    The record's ``column`` (a code) is looked up in ``file``'s ``key`` column, and the
    ``value`` column lands in the virtual column ``into``; an unknown code gives None.
    """

    file: str
    key: str
    value: str
    column: str
    into: str


@dataclass(frozen=True)
class FieldMap:
    """Which source column feeds which canonical field.

    Every field names a column of the raw record, or of a virtual column that a join or lookup
    adds. ``category`` is one column (a path string such as "Shoes > Running") or a list of
    columns, top level first. ``image`` is a column holding a path or URL, or a template
    containing ``{column}`` placeholders, e.g. ``"images/{id}.jpg"``. ``attributes`` is a list
    of columns kept under their own names, or a dict ``{attribute_name: column}``; a column
    whose value is itself a dict is merged in item by item.
    """

    name: str
    id: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    category: str | list[str] | None = None
    price: str | None = None
    rating: str | None = None
    rating_scale: float = 5.0
    popularity: str | None = None
    image: str | None = None
    colour: str | None = None
    material: str | None = None
    gender: str | None = None
    attributes: list[str] | dict[str, str] = field(default_factory=list)
    joins: list[Join] = field(default_factory=list)
    lookups: list[Lookup] = field(default_factory=list)
    format: str | None = None


# --- readers -------------------------------------------------------------------------------

def detect_format(path: str | Path, format: str | None = None) -> str:
    """The file's format: ``format`` if given, else from the extension (.jsonl/.ndjson/.csv/.tsv)."""
    if format:
        if format not in FORMATS:
            raise InputError(f"unknown catalogue format {format!r}; expected one of {FORMATS}")
        return format
    suffix = Path(path).suffix.lower()
    by_suffix = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
                 ".tsv": "tsv", ".tab": "tsv"}
    if suffix not in by_suffix:
        raise InputError(f"cannot tell the format of {path}; pass format= one of {FORMATS}")
    return by_suffix[suffix]


def _error_record(raw: str, error: str) -> dict:
    return {UNPARSEABLE: raw, ERROR: error}


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSON Lines file.

    A line that is not a JSON object comes out as an error record, never raised or dropped.
    Undecodable bytes become U+FFFD rather than stopping the stream.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except ValueError as e:
                yield line_no, _error_record(text, f"invalid JSON: {e}")
                continue
            if not isinstance(record, dict):
                yield line_no, _error_record(text, f"expected a JSON object, got {type(record).__name__}")
                continue
            yield line_no, record


def read_delimited(path: str | Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each row of a CSV/TSV file with a header line.

    CSV-style quoting applies (a quoted field may hold the delimiter or a newline); the line
    number is where the row starts. A row whose field count differs from the header's comes
    out as an error record. Blank lines are not records and are skipped.
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield start, _error_record("", f"malformed row: {e}")
                start = reader.line_num + 1
                continue
            line_no, start = start, reader.line_num + 1
            if not row:
                continue
            if len(row) != len(header):
                yield line_no, _error_record(delimiter.join(row),
                                             f"expected {len(header)} fields, got {len(row)}")
                continue
            yield line_no, dict(zip(header, row))


def read_records(path: str | Path, format: str | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line_number, raw_record)`` from a JSONL, CSV or TSV catalogue file.

    >>> next(read_records("products.tsv"))  # doctest: +SKIP
    (2, {'product_uid': '100001', 'title': 'Simpson Strong-Tie 12-Gauge Angle'})
    """
    kind = detect_format(path, format)
    if kind == "jsonl":
        return read_jsonl(path)
    return read_delimited(path, "\t" if kind == "tsv" else ",")


# --- side tables ---------------------------------------------------------------------------

def load_side_tables(mapping: FieldMap, base_dir: str | Path) -> dict[str, dict[str, str]]:
    """Load the mapping's joins and lookups, keyed by their ``into`` column.

    Each table is ``{key: value}``; a join with several rows per key holds the unique values
    joined with ", ". Files are resolved relative to ``base_dir`` (the catalogue's folder).
    """
    tables: dict[str, dict[str, str]] = {}
    for table in [*mapping.joins, *mapping.lookups]:
        values: dict[str, list[str]] = {}
        for _, row in read_records(Path(base_dir) / table.file):
            if UNPARSEABLE in row:
                continue
            key, value = str(row.get(table.key, "")).strip(), str(row.get(table.value) or "").strip()
            if key and value and value not in values.setdefault(key, []):
                values[key].append(value)
        tables[table.into] = {k: ", ".join(v) for k, v in values.items()}
    return tables


# --- mapping -------------------------------------------------------------------------------

def _with_side_columns(raw: dict, mapping: FieldMap, tables: dict[str, dict[str, str]]) -> dict:
    view = dict(raw)
    for join in mapping.joins:
        view[join.into] = tables.get(join.into, {}).get(str(raw.get(mapping.id, "")).strip())
    for lookup in mapping.lookups:
        view[lookup.into] = tables.get(lookup.into, {}).get(str(raw.get(lookup.column, "")).strip())
    return view


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _image_reference(view: dict, image: str | None) -> str | None:
    if image is None:
        return None
    if "{" not in image:
        value = view.get(image)
        return None if _blank(value) else str(value).strip()
    try:
        return image.format_map({k: str(v).strip() for k, v in view.items() if not _blank(v)})
    except (KeyError, IndexError, ValueError):
        return None  # a placeholder column is empty or absent: no image reference


def _attributes(view: dict, spec: list[str] | dict[str, str]) -> dict:
    pairs = spec.items() if isinstance(spec, dict) else ((c, c) for c in spec)
    out: dict = {}
    for name, column in pairs:
        value = view.get(column)
        if isinstance(value, dict):
            out.update({str(k): v for k, v in value.items() if not _blank(v)})
        elif not _blank(value):
            out[name] = value
    return out


def apply_field_map(raw: dict, mapping: FieldMap, lookups: dict[str, dict[str, str]] | None = None) -> dict:
    """Turn one raw record into a source item with canonical keys (values still unparsed).

    ``lookups`` are the side tables from :func:`load_side_tables`. Keys: id (str or None),
    title, description, brand, category_path (list of raw parts), price, rating, rating_scale,
    popularity, image (path/URL or None), colour, material, gender, attributes (dict). An error
    record from a reader keeps its ``__unparseable__``/``__error__`` markers.

    >>> apply_field_map({"product_uid": "1", "title": "Angle"}, BUILTIN_FIELD_MAPS["homedepot"])["title"]
    'Angle'
    """
    view = _with_side_columns(raw, mapping, lookups or {})
    get = lambda column: None if column is None else view.get(column)  # noqa: E731
    raw_id = get(mapping.id)
    columns = [mapping.category] if isinstance(mapping.category, str) else (mapping.category or [])
    item = {
        "id": None if _blank(raw_id) else str(raw_id).strip(),
        "title": get(mapping.title),
        "description": get(mapping.description),
        "brand": get(mapping.brand),
        "category_path": [view[c] for c in columns if not _blank(view.get(c))],
        "price": get(mapping.price),
        "rating": get(mapping.rating),
        "rating_scale": mapping.rating_scale,
        "popularity": get(mapping.popularity),
        "image": _image_reference(view, mapping.image),
        "colour": get(mapping.colour),
        "material": get(mapping.material),
        "gender": get(mapping.gender),
        "attributes": _attributes(view, mapping.attributes),
    }
    if UNPARSEABLE in raw:
        item.update({UNPARSEABLE: raw[UNPARSEABLE], ERROR: raw.get(ERROR)})
    return item


def read_source_items(path: str | Path, mapping: FieldMap, format: str | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line_number, source_item)``: read the file, load its side tables, map each row."""
    tables = load_side_tables(mapping, Path(path).parent)
    for line_no, raw in read_records(path, format or mapping.format):
        yield line_no, apply_field_map(raw, mapping, tables)


# --- ready mappings ------------------------------------------------------------------------

BUILTIN_FIELD_MAPS: dict[str, FieldMap] = {
    # Keys are already canonical: the default for a shop's own JSONL export.
    "generic_jsonl": FieldMap(
        name="generic_jsonl", id="id", title="title", description="description", brand="brand",
        category="category", price="price", rating="rating", popularity="popularity",
        image="image", colour="colour", material="material", gender="gender",
        attributes=["attributes"], format="jsonl"),
    # Kaggle Home Depot: products.tsv holds only id and title; colour and material are joined.
    "homedepot": FieldMap(
        name="homedepot", id="product_uid", title="title", colour="color", material="material",
        joins=[Join("colors.tsv", "product_uid", "color", "color"),
               Join("materials.tsv", "product_uid", "material", "material")],
        format="tsv"),
    # Myntra small catalogue: images/<id>.jpg exist for only some products.
    "fashion": FieldMap(
        name="fashion", id="id", title="productDisplayName", gender="gender",
        category=["masterCategory", "subCategory", "articleType"], colour="baseColour",
        image="images/{id}.jpg", attributes=["season", "year", "usage"], format="tsv"),
    # Myntra rich records: the shopper pays discountedPrice; the list price is kept aside.
    "fashion_rich": FieldMap(
        name="fashion_rich", id="id", title="productDisplayName", description="description_html",
        brand="brandName", category=["masterCategory", "subCategory", "articleType"],
        price="discountedPrice", colour="baseColour", gender="gender",
        image="images_large/{id}.jpg",
        attributes={"list_price": "price", "age_group": "ageGroup", "season": "season",
                    "year": "year", "usage": "usage", "myntra_rating": "myntraRating",
                    "article_attributes": "articleAttributes"},
        format="jsonl"),
    # Instacart: aisle and department names come from code tables.
    "instacart": FieldMap(
        name="instacart", id="product_id", title="product_name", category=["department", "aisle"],
        lookups=[Lookup("aisles.tsv", "aisle_id", "aisle", "aisle_id", "aisle"),
                 Lookup("departments.tsv", "department_id", "department", "department_id", "department")],
        format="tsv"),
}


def field_map_from_dict(spec: dict) -> FieldMap:
    """Build a FieldMap from its JSON form (see :func:`load_field_map`); unknown keys are an error."""
    known = {f.name for f in fields(FieldMap)}
    unknown = set(spec) - known
    if unknown:
        raise InputError(f"unknown mapping keys {sorted(unknown)}; known: {sorted(known)}")
    if "id" not in spec:
        raise InputError("a mapping needs an 'id' column")
    spec = dict(spec)
    spec.setdefault("name", "custom")
    spec["joins"] = [Join(**j) for j in spec.get("joins", [])]
    spec["lookups"] = [Lookup(**lk) for lk in spec.get("lookups", [])]
    if spec.get("format") is not None:
        detect_format("", spec["format"])  # validates
    return FieldMap(**spec)


def load_field_map(name_or_path: str | Path) -> FieldMap:
    """A built-in mapping by name, or one described by a JSON file.

    The JSON file holds one object with FieldMap's fields; only ``id`` is required::

        {"name": "myshop", "format": "tsv",
         "id": "sku", "title": "name", "description": "body_html", "brand": "vendor",
         "category": ["dept", "aisle"],          // or one column: "category": "path"
         "price": "price", "rating": "stars", "rating_scale": 5, "popularity": "sales",
         "image": "img/{sku}.jpg",               // a column, or a template of columns
         "colour": "color", "material": null, "gender": null,
         "attributes": ["size", "season"],       // or {"attribute_name": "column"}
         "joins":   [{"file": "colors.tsv", "key": "sku", "value": "color", "into": "color"}],
         "lookups": [{"file": "depts.tsv", "key": "dept_id", "value": "dept",
                      "column": "dept_id", "into": "dept"}]}

    (The ``//`` comments are for this docstring only; JSON has none.) Side-table files are
    relative to the catalogue file's directory.
    """
    if str(name_or_path) in BUILTIN_FIELD_MAPS:
        return BUILTIN_FIELD_MAPS[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise InputError(f"no built-in mapping or mapping file {str(name_or_path)!r}; "
                         f"built-in: {sorted(BUILTIN_FIELD_MAPS)}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise InputError(f"{path}: a mapping file holds one JSON object")
    spec.setdefault("name", path.stem)
    return field_map_from_dict(spec)
