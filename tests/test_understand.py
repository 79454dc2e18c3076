"""Specification of query understanding: normalise, spot model numbers, extract filters.

Pure tests: no service fixtures. The real-query test reads Home Depot shopper queries in place.
"""

from __future__ import annotations

import csv
from itertools import islice
from pathlib import Path

import pytest

from shopsearch.query.understand import (
    Facets, extract_filters, find_price, looks_like_sku, normalise_query, understand,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A Myntra-like catalogue (values as the fashion data spells them) with a few Home Depot brands.
FASHION = Facets.from_values(
    colour=["Black", "Navy Blue", "Blue", "Red", "White", "Grey", "Brown", "Silver"],
    brand=["Nike", "Palm Tree", "Black & Decker", "Hampton Bay"],
    category=["Sports Shoes", "Tshirts", "Watches", "Dresses"],
    gender=["Men", "Women", "Boys", "Girls", "Unisex"],
)


def colours(u) -> list:
    return [c for c in u.filters if "colour" in str(c)]


@pytest.mark.parametrize("raw, expected", [
    ("ＤＷ０２４０", "dw0240"),
    ("Ｎｉｋｅ　Ａｉｒ", "nike air"),
    ("  Cordless   DRILL\t", "cordless drill"),
    ("黑色运动鞋", "黑色运动鞋"),
    ("５００元以下　女士手表", "500元以下 女士手表"),
    ("Ｔ恤", "t恤"),
    ("Women’s Shoes", "women's shoes"),
    ("", ""),
])
def test_normalise_folds_width_case_and_spaces_and_keeps_chinese(raw, expected):
    assert normalise_query(raw) == expected


@pytest.mark.parametrize("q, sku", [
    ("DW0240", True),               # letters + digits
    ("MX-5020", True),              # hyphenated code
    ("12345-678", True),            # hyphenated digits
    ("B07XJ8C8F5", True),           # an ASIN
    ("sku 4411", True),             # keyword + number
    ("model 173k", True),
    ("#44115", True),
    ("dewalt dw0240", True),        # brand + code: still two tokens
    ("rj45", True),                 # a connector code: BM25 finds it exactly
    ("cr2032 battery", True),
    ("12345", True),                # five digits or more
    ("0.5 in. x 10 ft.", False),    # a dimension phrase
    ("2x4", False),
    ("4x8wood", False),
    ("120v", False),                # a quantity with its unit
    ("4shelves", False),
    ("3-way switch", False),        # a number joined to a word
    ("2-light", False),
    ("10-32", False),               # thread size: short digits
    ("2024", False),
    ("mast5er", False),             # a typo has one digit
    ("cordless drill", False),
    ("dw0240 drill bit set", False),  # three tokens or more read as a description
    ("黑色运动鞋", False),
    ("", False),
])
def test_sku_detection(q, sku):
    assert looks_like_sku(q) is sku


@pytest.mark.parametrize("q, clause, text", [
    ("black shoes", {"term": {"colour": "Black"}}, "shoes"),
    ("navy blue shirt", {"term": {"colour": "Navy Blue"}}, "shirt"),      # longest match first
    ("blue jeans", {"term": {"colour": "Blue"}}, "jeans"),
    ("navy shirt", {"term": {"colour": "Navy Blue"}}, "shirt"),           # alias
    ("gray hoodie", {"term": {"colour": "Grey"}}, "hoodie"),              # spelling resolved
    ("black and white shirt", {"terms": {"colour": ["Black", "White"]}}, "shirt"),
    ("黑色运动鞋", {"term": {"colour": "Black"}}, "运动鞋"),
    ("红色连衣裙", {"term": {"colour": "Red"}}, "连衣裙"),
    ("灰色卫衣", {"term": {"colour": "Grey"}}, "卫衣"),
    ("咖啡色皮鞋", {"term": {"colour": "Brown"}}, "皮鞋"),
])
def test_colour_words_become_a_colour_filter(q, clause, text):
    u = understand(q, FASHION)
    assert colours(u) == [clause] and u.text == text


@pytest.mark.parametrize("q", ["blackboard eraser", "redwood deck", "bluetooth speaker",
                               "黑冰科技", "广西壮乡知味黑米", "蛋白粉"])  # a single 黑 or 白 is not a colour
def test_colours_match_whole_words_or_whole_chinese_colour_names_only(q):
    assert colours(understand(q, FASHION)) == []


@pytest.mark.parametrize("q", ["purple dress", "紫色连衣裙", "gold watch"])
def test_a_colour_the_catalogue_lacks_is_not_extracted(q):
    u = understand(q, FASHION)
    assert colours(u) == [] and u.text == normalise_query(q)


@pytest.mark.parametrize("facets, expected", [
    (Facets.from_values(colour=["BLACK"]), [{"term": {"colour": "BLACK"}}]),  # the catalogue's spelling
    (Facets.from_values(colour=["White"]), []),
    (Facets(), []),
])
def test_chinese_colour_maps_only_onto_a_colour_the_catalogue_has(facets, expected):
    assert colours(understand("黑色运动鞋", facets)) == expected


def test_a_colour_facet_value_that_names_no_colour_is_not_a_filter():
    facets = Facets.from_values(colour=["Tree", "Wood", "White"])
    u = understand("white christmas tree", facets)
    assert u.filters == [{"term": {"colour": "White"}}] and u.text == "christmas tree"


@pytest.mark.parametrize("q, bounds", [
    ("shoes under 50", {"lte": 50}),
    ("shoes below $50", {"lte": 50}),
    ("shoes less than 49.99", {"lte": 49.99}),
    ("shoes < 50", {"lte": 50}),
    ("watch over 100", {"gte": 100}),
    ("watch above $1,000", {"gte": 1000}),
    ("shoes between 20 and 50", {"gte": 20, "lte": 50}),
    ("shoes 20-50 dollars", {"gte": 20, "lte": 50}),
    ("shoes $20 to $50", {"gte": 20, "lte": 50}),
    ("shoes $50 - $20", {"gte": 20, "lte": 50}),
    ("500元以下 手表", {"lte": 500}),
    ("低于500元 手表", {"lte": 500}),
    ("500元以上 手表", {"gte": 500}),
    ("100到200元 手表", {"gte": 100, "lte": 200}),
    ("shoes over 20 under 50", {"gte": 20, "lte": 50}),
])
def test_price_phrases_become_a_price_range(q, bounds):
    u = understand(q, Facets())
    assert u.filters == [{"range": {"price": bounds}}]
    assert u.text in ("shoes", "watch", "手表")


@pytest.mark.parametrize("q", [
    "under 30 in. range hood",      # a size
    "under cabinet lighting",
    "10-32 screws",                 # a thread size, no currency
    "deck over",
    "2x4 8 ft",
    "500以下",                       # no 元: could be anything
])
def test_numbers_that_are_not_prices_are_left_alone(q):
    assert find_price(normalise_query(q)) == ([], {})


@pytest.mark.parametrize("q, clause, text", [
    ("nike running shoes", {"term": {"brand": "Nike"}}, "running shoes"),
    ("palm tree skirt", {"term": {"brand": "Palm Tree"}}, "skirt"),
    ("black & decker drill", {"term": {"brand": "Black & Decker"}}, "drill"),  # longer than "black"
    ("hampton bay chestnut pull up shade", {"term": {"brand": "Hampton Bay"}}, "chestnut pull up shade"),
])
def test_a_known_brand_phrase_becomes_a_brand_filter(q, clause, text):
    u = understand(q, FASHION)
    assert u.filters == [clause] and u.text == text


@pytest.mark.parametrize("q", ["palm oil", "nikes", "hampton"])
def test_part_of_a_brand_is_not_a_brand(q):
    assert understand(q, FASHION).filters == []


@pytest.mark.parametrize("q, gender, text", [
    ("running shoes for men", "Men", "running shoes"),
    ("men's watches", "Men", "watches"),
    ("mens shirt", "Men", "shirt"),
    ("women tshirts", "Women", "tshirts"),
    ("Women’s dresses", "Women", "dresses"),
    ("womens jeans", "Women", "jeans"),
    ("女士手表", "Women", "手表"),
    ("男士衬衫", "Men", "衬衫"),
])
def test_explicit_gender_words_become_a_gender_filter(q, gender, text):
    u = understand(q, FASHION)
    assert u.filters == [{"term": {"gender": gender}}] and u.text == text


@pytest.mark.parametrize("q", ["boys shoes", "女童鞋", "女儿礼物", "menswear", "womenswear"])
def test_other_words_are_not_a_gender_filter(q):
    assert understand(q, FASHION).filters == []


def test_gender_words_need_the_gender_facet():
    assert understand("mens shirt", Facets.from_values(colour=["Black"])).filters == []


@pytest.mark.parametrize("q", ["black", "nike", "women's", "under $50", "黑色"])
def test_a_query_of_only_filter_words_keeps_its_text(q):
    u = understand(q, FASHION)
    assert u.filters and u.text == normalise_query(q)


@pytest.mark.parametrize("q, hint", [
    ("black sports shoes", "Sports Shoes"),
    ("黑色运动鞋", "Sports Shoes"),
    ("500元以下 女士手表", "Watches"),
    ("t恤", "Tshirts"),
    ("running shoes", None),
])
def test_a_named_category_is_a_hint_not_a_filter(q, hint):
    u = understand(q, FASHION)
    assert u.category_hint == hint
    assert not any("category" in str(c) for c in u.filters)


def test_a_chinese_query_is_understood_whole():
    u = understand("５００元以下　女士手表", FASHION)
    assert u.text == "手表" and u.category_hint == "Watches" and not u.sku
    assert u.filters == [{"term": {"gender": "Women"}}, {"range": {"price": {"lte": 500}}}]


def test_applied_explains_every_filter_and_the_sku_flag():
    u = understand("dewalt dw0240", Facets.from_values(brand=["DeWalt"]))
    assert u.sku and u.text == "dw0240"
    assert u.applied == ["brand = DeWalt (from 'dewalt')", "sku: lexical only"]


def test_extract_filters_leaves_the_sku_flag_to_understand():
    assert extract_filters("dw0240", Facets()).sku is False


def test_real_shopper_queries_never_raise_and_never_lose_their_text():
    with open(DATA / "homedepot" / "judgments.tsv", newline="", encoding="utf-8") as f:
        queries = [row["query"] for row in islice(csv.DictReader(f, delimiter="\t"), 200)]
    with open(DATA / "homedepot" / "colors.tsv", newline="", encoding="utf-8") as f:
        facets = Facets.from_values(colour=[row["color"] for row in csv.DictReader(f, delimiter="\t")],
                                    brand=["Hampton Bay", "Husky", "Samsung", "Honda", "American Standard"])
    assert len(queries) == 200
    for q in queries:
        assert understand(q, facets).text.strip(), q
