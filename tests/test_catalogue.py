"""Specification of the catalogue stage: readers, field mappings, the ready mappings on real
rows, and the broken fixture run end to end through read -> map -> clean -> dedupe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest

from shopsearch.ingest.clean import clean_item
from shopsearch.ingest.dedupe import dedupe
from shopsearch.ingest.read import (
    BUILTIN_FIELD_MAPS, FieldMap, Join, Lookup, apply_field_map, detect_format, load_field_map,
    load_side_tables, read_records, read_source_items,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- readers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, format, expected", [
    ("a.jsonl", None, "jsonl"), ("a.ndjson", None, "jsonl"), ("a.CSV", None, "csv"),
    ("a.tsv", None, "tsv"), ("a.txt", "tsv", "tsv"), ("a.tsv", "csv", "csv"),
])
def test_the_format_comes_from_the_extension_unless_given(name, format, expected):
    assert detect_format(name, format) == expected


@pytest.mark.parametrize("name, format", [("a.txt", None), ("a.tsv", "xml")])
def test_an_unknown_format_is_an_error(name, format):
    with pytest.raises(ValueError):
        detect_format(name, format)


def test_tsv_fields_may_quote_a_tab_and_a_newline(tmp_path):
    path = write(tmp_path / "p.tsv", 'id\ttitle\n1\t"Tab\there"\n2\t"Two\nlines"\n3\tPlain "inch\n')
    assert list(read_records(path)) == [
        (2, {"id": "1", "title": "Tab\there"}),
        (3, {"id": "2", "title": "Two\nlines"}),
        (5, {"id": "3", "title": 'Plain "inch'}),
    ]


def test_csv_rows_become_dicts_keyed_by_the_header(tmp_path):
    path = write(tmp_path / "p.csv", 'id,title,price\n1,"Shoe, red",9.50\n2,Hat,\n')
    assert list(read_records(path)) == [
        (2, {"id": "1", "title": "Shoe, red", "price": "9.50"}),
        (3, {"id": "2", "title": "Hat", "price": ""}),
    ]


def test_a_row_with_the_wrong_number_of_fields_becomes_an_error_record(tmp_path):
    path = write(tmp_path / "p.tsv", "id\ttitle\n1\tok\n2\ttoo\tmany\n3\n")
    records = list(read_records(path))
    assert [n for n, _ in records] == [2, 3, 4]
    assert "__unparseable__" not in records[0][1]
    assert all("__unparseable__" in r and "__error__" in r for _, r in records[1:])


def test_a_bad_jsonl_line_becomes_an_error_record_and_nothing_is_dropped(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"id": 1}\n{"id": 2, oops\n\n[1, 2]\n{"id": 3}\n')
    records = list(read_records(path))
    assert [n for n, _ in records] == [1, 2, 4, 5]
    assert records[0][1] == {"id": 1} and records[3][1] == {"id": 3}
    assert records[1][1]["__unparseable__"] == '{"id": 2, oops'
    assert "invalid JSON" in records[1][1]["__error__"]
    assert "expected a JSON object" in records[2][1]["__error__"]


def test_a_utf8_byte_order_mark_does_not_end_up_in_the_first_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("id,title\n1,Shoe\n".encode("utf-8-sig"))
    assert next(read_records(path))[1] == {"id": "1", "title": "Shoe"}


def test_readers_stream_a_large_file_lazily(tmp_path):
    path = tmp_path / "big.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttitle\n")
        f.writelines(f"{i}\tProduct {i}\n" for i in range(60_000))
    records = read_records(path)
    assert isinstance(records, Iterator)
    assert next(records) == (2, {"id": "0", "title": "Product 0"})
    assert sum(1 for _ in records) == 59_999


# --- apply_field_map -------------------------------------------------------------------------

SHOP = FieldMap(
    name="shop", id="sku", title="name", description="body", brand="vendor",
    category=["dept", "aisle"], price="cost", rating="stars", popularity="sales",
    image="img/{sku}.jpg", colour="color", attributes={"size": "size", "extra": "specs"},
    lookups=[Lookup("aisles.tsv", "aisle_id", "aisle", "aisle_id", "aisle")],
    joins=[Join("colors.tsv", "sku", "color", "color")])


@pytest.fixture
def shop_tables(tmp_path) -> dict:
    write(tmp_path / "aisles.tsv", "aisle_id\taisle\n7\tBaking\n")
    write(tmp_path / "colors.tsv", "sku\tcolor\n1\tRed\n1\tBlue\n1\tRed\n2\tGreen\n")
    return load_side_tables(SHOP, tmp_path)


def test_a_join_gathers_unique_values_per_product(shop_tables):
    assert shop_tables["color"] == {"1": "Red, Blue", "2": "Green"}


def test_mapping_gives_canonical_keys(shop_tables):
    raw = {"sku": " 1 ", "name": "Flour", "body": "<p>Fine</p>", "vendor": "Mill", "dept": "Pantry",
           "aisle_id": "7", "cost": "$2", "stars": "4", "sales": "10", "size": "1kg",
           "specs": {"organic": "yes"}}
    assert apply_field_map(raw, SHOP, shop_tables) == {
        "id": "1", "title": "Flour", "description": "<p>Fine</p>", "brand": "Mill",
        "category_path": ["Pantry", "Baking"], "price": "$2", "rating": "4", "rating_scale": 5.0,
        "popularity": "10", "image": "img/1.jpg", "colour": "Red, Blue", "material": None,
        "gender": None, "attributes": {"size": "1kg", "organic": "yes"}}


@pytest.mark.parametrize("raw, key, value", [
    ({"sku": "9", "aisle_id": "999"}, "category_path", []),
    ({"sku": "9"}, "colour", None),
    ({"sku": ""}, "image", None),
    ({"sku": "9", "size": ""}, "attributes", {}),
    ({"sku": ""}, "id", None),
])
def test_missing_values_map_to_none_or_empty(shop_tables, raw, key, value):
    assert apply_field_map(raw, SHOP, shop_tables)[key] == value


@pytest.mark.parametrize("image, raw, reference", [
    ("photo", {"id": "1", "photo": "https://cdn/x.jpg"}, "https://cdn/x.jpg"),
    ("photo", {"id": "1", "photo": "  "}, None),
    ("pics/{id}.jpg", {"id": "5"}, "pics/5.jpg"),
    ("pics/{missing}.jpg", {"id": "5"}, None),
])
def test_image_is_a_column_or_a_template(image, raw, reference):
    assert apply_field_map(raw, FieldMap(name="m", id="id", image=image))["image"] == reference


def test_a_single_category_column_is_kept_as_one_raw_part():
    mapping = FieldMap(name="m", id="id", category="path")
    assert apply_field_map({"id": "1", "path": "Shoes > Running"}, mapping)["category_path"] == ["Shoes > Running"]


def test_an_error_record_keeps_its_markers_through_mapping():
    item = apply_field_map({"__unparseable__": "{bad", "__error__": "invalid JSON"}, BUILTIN_FIELD_MAPS["generic_jsonl"])
    assert (item["id"], item["__unparseable__"], item["__error__"]) == (None, "{bad", "invalid JSON")


# --- load_field_map --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["generic_jsonl", "homedepot", "fashion", "fashion_rich", "instacart"])
def test_builtin_mappings_load_by_name(name):
    assert load_field_map(name) is BUILTIN_FIELD_MAPS[name]


def test_a_mapping_loads_from_a_json_file(tmp_path):
    spec = {"id": "sku", "title": "name", "category": ["dept", "aisle"], "attributes": {"size": "sz"},
            "joins": [{"file": "c.tsv", "key": "sku", "value": "color", "into": "color"}],
            "lookups": [{"file": "a.tsv", "key": "k", "value": "v", "column": "aisle_id", "into": "aisle"}]}
    mapping = load_field_map(write(tmp_path / "myshop.json", json.dumps(spec)))
    assert (mapping.name, mapping.category, mapping.joins[0].into, mapping.lookups[0].column) == (
        "myshop", ["dept", "aisle"], "color", "aisle_id")


@pytest.mark.parametrize("spec", [{"id": "sku", "titel": "name"}, {"title": "name"}, {"id": "x", "format": "xml"}])
def test_a_mapping_file_with_unknown_keys_or_no_id_is_an_error(tmp_path, spec):
    with pytest.raises(ValueError):
        load_field_map(write(tmp_path / "m.json", json.dumps(spec)))


def test_an_unknown_mapping_name_is_an_error():
    with pytest.raises(ValueError, match="homedepot"):
        load_field_map("no-such-shop")


# --- the ready mappings on real rows -------------------------------------------------------

def first_clean_items(name: str, relative: str, n: int = 5) -> list[dict]:
    path = DATA / relative
    results = [clean_item(item, base_dir=path.parent)
               for _, item in islice(read_source_items(path, load_field_map(name)), n)]
    assert all(r.accepted for r in results), [r for r in results if not r.accepted]
    return [r.item for r in results]


def test_homedepot_rows_get_title_and_joined_colour_and_material():
    first, second = first_clean_items("homedepot", "homedepot/products.tsv")[:2]
    assert (first["id"], first["title"], first["material"]) == (
        "100001", "Simpson Strong-Tie 12-Gauge Angle", "Galvanized Steel")
    assert (second["colour"], second["flags"]) == ("Browns / Tans Tugboat", ["no_image"])


def test_fashion_rows_get_a_three_level_category_path_and_their_image_if_present():
    items = first_clean_items("fashion", "fashion/products.tsv")
    assert items[0]["category_path"] == ["Apparel", "Topwear", "Shirts"]
    assert (items[0]["gender"], items[0]["colour"]) == ("Men", "Navy Blue")
    for item in items:
        exists = (DATA / "fashion" / "images" / f"{item['id']}.jpg").is_file()
        assert item["flags"] == ([] if exists else ["image_unreadable"])


def test_fashion_rich_rows_get_brand_selling_price_and_plain_description():
    item = first_clean_items("fashion_rich", "fashion/rich_products.jsonl")[0]
    assert (item["brand"], item["price"], item["attributes"]["list_price"]) == ("Palm Tree", 324.0, 649)
    assert item["description"].startswith("Wash Care Machine Wash separately")
    assert "<" not in item["description"] and item["attributes"]["Pattern"] == "Printed"
    assert item["flags"] == [] and item["image"].endswith("images_large/10000.jpg")


def test_instacart_rows_get_department_then_aisle_names():
    item = first_clean_items("instacart", "instacart/products.tsv")[0]
    assert (item["title"], item["category_path"]) == ("Chocolate Sandwich Cookies", ["snacks", "cookies cakes"])


# --- the broken fixture end to end ---------------------------------------------------------

# line -> where it must land: ("accepted", flags), ("rejected", reason) or ("superseded", id)
EXPECTED = {
    1: ("accepted", []),
    2: ("accepted", ["no_image"]),
    3: ("accepted", []),
    4: ("accepted", []),
    5: ("rejected", "missing_title"),
    6: ("accepted", []),
    7: ("rejected", "price_unparseable"),
    8: ("rejected", "rating_out_of_range"),
    9: ("superseded", "sku-009"),
    10: ("accepted", ["image_unreadable"]),
    11: ("accepted", ["image_unreadable"]),
    12: ("accepted", ["no_image"]),
    13: ("rejected", "unparseable"),
    14: ("accepted", ["no_image"]),
    15: ("accepted", ["no_image"]),
}


@pytest.fixture(scope="module")
def fixture_run() -> dict:
    """Read, map, clean and dedupe the broken fixture; say where each line landed."""
    path = FIXTURES / "broken_catalogue.jsonl"
    read, rejected, accepted, landed = 0, 0, [], {}
    for line, item in read_source_items(path, load_field_map("generic_jsonl")):
        read += 1
        result = clean_item(item, base_dir=path.parent)
        if result.accepted:
            accepted.append((line, result.item))
        else:
            rejected += 1
            landed[line] = ("rejected", result.reason)
    kept, superseded, groups = dedupe(item for _, item in accepted)
    for line, item in accepted:
        if any(s["record"] is item for s in superseded):
            landed[line] = ("superseded", item["id"])
        else:
            landed[line] = ("accepted", next(k for k in kept if k["id"] == item["id"])["flags"])
    return {"read": read, "rejected": rejected, "landed": landed, "kept": {k["id"]: k for k in kept},
            "superseded": superseded, "groups": groups}


def test_broken_fixture_every_line_lands_where_the_rules_say(fixture_run):
    assert fixture_run["landed"] == EXPECTED


def test_broken_fixture_nothing_is_silently_dropped(fixture_run):
    run = fixture_run
    assert run["read"] == 15
    assert run["read"] == len(run["kept"]) + run["rejected"] + len(run["superseded"])


@pytest.mark.parametrize("sku, key, value", [
    ("sku-002", "description", "Light & fast Grippy sole Men's fit"),
    ("sku-003", "title", "NIKE Air Max 90"),
    ("sku-004", "title", "耐克 黑色运动鞋 AIR"),
    ("sku-004", "price", 1299.0),
    ("sku-004", "category_path", ["鞋类", "运动鞋"]),
    ("sku-006", "price", 1299.0),
    ("sku-009", "title", "New Title Rain Jacket"),
])
def test_broken_fixture_kept_items_are_cleaned(fixture_run, sku, key, value):
    assert fixture_run["kept"][sku][key] == value


def test_broken_fixture_near_identical_titles_form_one_group(fixture_run):
    assert [g["ids"] for g in fixture_run["groups"]] == [["sku-012", "sku-013"]]
    kept = fixture_run["kept"]
    assert kept["sku-012"]["duplicate_group"] == kept["sku-013"]["duplicate_group"]
    assert sum("duplicate_group" in item for item in kept.values()) == 2


def test_broken_fixture_the_earlier_duplicate_id_is_reported(fixture_run):
    [report] = fixture_run["superseded"]
    assert (report["id"], report["reason"], report["record"]["title"]) == (
        "sku-009", "duplicate_id_superseded", "Old Title Rain Jacket")
