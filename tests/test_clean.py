"""Specification of the clean stage: each rule on its own, then clean_item and dedupe."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shopsearch.ingest.clean import (
    Rejected, check_popularity, check_rating, check_required, clean_item,
    content_hash, normalise_category_path, normalise_text,
    parse_price, strip_html,
)
from shopsearch.ingest.images import check_image
from shopsearch.ingest.dedupe import dedupe, near_duplicate_key

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_JPEG = DATA / "fashion" / "images" / "8065.jpg"


def source_item(**fields) -> dict:
    """A source item as apply_field_map makes it, with a few sensible defaults."""
    item = {"id": "sku-1", "title": "Trail Shoe", "description": None, "brand": "Acme",
            "category_path": ["Shoes > Running"], "price": "10", "rating": None,
            "rating_scale": 5.0, "popularity": None, "image": None, "colour": None,
            "material": None, "gender": None, "attributes": {}}
    return {**item, **fields}


def clean(**fields) -> dict:
    result = clean_item(source_item(**fields))
    assert result.accepted, result
    return result.item


# --- strip_html ----------------------------------------------------------------------------

@pytest.mark.parametrize("html, text", [
    ("<p>Soft <b>cotton</b> shirt</p>", "Soft cotton shirt"),
    ("<p>Wash</p><p>Dry</p>", "Wash Dry"),
    ("<ul><li>one</li><li>two</li></ul>", "one two"),
    ("line<br/>break<br>again", "line break again"),
    ("<b>Bo</b>ld", "Bold"),
    ("<div style='x'>\n  spaced \t out </div>", "spaced out"),
])
def test_tags_are_removed_and_block_elements_stay_apart(html, text):
    assert strip_html(html) == text


@pytest.mark.parametrize("html", [
    "Shirt<script>alert('x')</script>",
    "Shirt<style>p { color: red }</style>",
    "Shirt<!-- a comment -->",
])
def test_script_style_and_comments_leave_no_text(html):
    assert strip_html(html) == "Shirt"


@pytest.mark.parametrize("html, text", [
    ("Black &amp; Decker", "Black & Decker"),
    ("Men&#39;s", "Men's"),
    ("12&quot; blade", '12" blade'),
    ("a&nbsp;b", "a b"),
])
def test_html_entities_are_unescaped(html, text):
    assert strip_html(html) == text


@pytest.mark.parametrize("text", ["Size < 5 & up", "a<b", "AT&T"])
def test_text_that_only_looks_like_markup_is_kept(text):
    assert strip_html(text) == text


def test_html_soup_becomes_readable_text():
    soup = ("<div><p>Light&nbsp;&amp;&nbsp;fast</p><script>track('x')</script>"
            "<style>p{color:red}</style><ul><li>Grippy sole</li><li>Men&#39;s fit</li></ul></div>")
    assert normalise_text(strip_html(soup)) == "Light & fast Grippy sole Men's fit"


@pytest.mark.parametrize("empty", [None, ""])
def test_no_html_gives_empty_text(empty):
    assert strip_html(empty) == ""


# --- normalise_text ------------------------------------------------------------------------

@pytest.mark.parametrize("raw, folded", [
    ("ＮＩＫＥ　Ａｉｒ　Ｍａｘ　９０", "NIKE Air Max 90"),
    ("ＡＢＣ１２３！（ｘ）", "ABC123!(x)"),
    ("耐克　黑色运动鞋　ＡＩＲ", "耐克 黑色运动鞋 AIR"),
])
def test_full_width_text_is_folded_to_half_width(raw, folded):
    assert normalise_text(raw) == folded


@pytest.mark.parametrize("raw", ["耐克　黑色运动鞋", "耐克 黑色运动鞋"])
def test_chinese_characters_are_kept_intact(raw):
    assert normalise_text(raw) == "耐克 黑色运动鞋"


@pytest.mark.parametrize("raw, folded", [
    ("zero\u200bwidth", "zerowidth"),
    ("\ufeffbom", "bom"),
    ("soft\u00adhyphen", "softhyphen"),
    ("bell\x07", "bell"),
    ("tab\tand\nnewline", "tab and newline"),
    ("  many    spaces  ", "many spaces"),
    ("no\u00a0break", "no break"),
])
def test_control_and_zero_width_characters_go_and_whitespace_folds(raw, folded):
    assert normalise_text(raw) == folded


@pytest.mark.parametrize("raw, text", [(None, ""), (42, "42")])
def test_non_strings_become_text(raw, text):
    assert normalise_text(raw) == text


# --- parse_price ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, price", [
    (12, 12.0),
    (12.5, 12.5),
    ("12.5", 12.5),
    ("¥1,299.00", 1299.0),
    ("￥1,299", 1299.0),
    ("$12.50", 12.5),
    ("€ 1.299,00", 1299.0),
    ("12,50 €", 12.5),
    ("1 299", 1299.0),
    ("1.299.000", 1299000.0),
    ("Rs. 499", 499.0),
    ("USD 30", 30.0),
    ("０", 0.0),
])
def test_prices_are_read_from_numbers_and_shop_formats(raw, price):
    assert parse_price(raw) == price


@pytest.mark.parametrize("raw", ["12-15", "$12 - $15", "12 to 15", "15-12"])
def test_a_price_range_gives_its_lower_bound(raw):
    assert parse_price(raw) == 12.0


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_a_missing_price_is_allowed(raw):
    assert parse_price(raw) is None


@pytest.mark.parametrize("raw, reason", [
    ("abc", "price_unparseable"),
    ("Free", "price_unparseable"),
    ("$", "price_unparseable"),
    ("12 15", "price_unparseable"),
    ("1,2,3", "price_unparseable"),
    (float("nan"), "price_unparseable"),
    (True, "price_unparseable"),
    (-5, "price_negative"),
    ("-12.00", "price_negative"),
    ("$-3", "price_negative"),
])
def test_garbage_and_negative_prices_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(Rejected) as caught:
        parse_price(raw)
    assert caught.value.reason == reason


# --- check_rating, check_popularity --------------------------------------------------------

@pytest.mark.parametrize("raw, rating", [(4.5, 4.5), ("4", 4.0), ("4,5", 4.5), (0, 0.0), (5, 5.0)])
def test_ratings_inside_the_scale_are_kept(raw, rating):
    assert check_rating(raw) == rating


@pytest.mark.parametrize("raw", [None, "", " "])
def test_a_missing_rating_is_allowed(raw):
    assert check_rating(raw) is None


@pytest.mark.parametrize("raw, scale, reason", [
    (7, 5.0, "rating_out_of_range"),
    (-1, 5.0, "rating_out_of_range"),
    (7, 10.0, None),
    ("five", 5.0, "rating_unparseable"),
    ("nan", 5.0, "rating_unparseable"),
])
def test_ratings_outside_the_scale_or_unreadable_are_rejected(raw, scale, reason):
    if reason is None:
        assert check_rating(raw, scale) == 7.0
        return
    with pytest.raises(Rejected) as caught:
        check_rating(raw, scale)
    assert caught.value.reason == reason


@pytest.mark.parametrize("raw, outcome", [
    (None, None), ("120", 120.0), (0, 0.0), ("lots", "popularity_unparseable"), (-3, "popularity_negative"),
])
def test_popularity_is_a_non_negative_count(raw, outcome):
    if isinstance(outcome, str):
        with pytest.raises(Rejected, match=outcome):
            check_popularity(raw)
    else:
        assert check_popularity(raw) == outcome


# --- normalise_category_path ---------------------------------------------------------------

@pytest.mark.parametrize("raw, path", [
    ("Shoes > Running", ["Shoes", "Running"]),
    ("Shoes/Running", ["Shoes", "Running"]),
    ("Shoes | Running", ["Shoes", "Running"]),
    ("Shoes » Running › Trail", ["Shoes", "Running", "Trail"]),
    ("鞋类 ＞ 运动鞋", ["鞋类", "运动鞋"]),
    (["Apparel", "Topwear", "Shirts"], ["Apparel", "Topwear", "Shirts"]),
    (["Home > Garden", "Tools"], ["Home", "Garden", "Tools"]),
])
def test_category_paths_split_on_any_usual_separator(raw, path):
    assert normalise_category_path(raw) == path


@pytest.mark.parametrize("raw, path", [
    ("Shoes >  > Running", ["Shoes", "Running"]),
    (["missing", "missing"], ["missing"]),
    ("Shoes > shoes > Running", ["Shoes", "Running"]),
    (["  Home   Decor ", ""], ["Home Decor"]),
    (None, []),
    ("", []),
])
def test_category_segments_are_cleaned_and_repeats_collapse(raw, path):
    assert normalise_category_path(raw) == path


def test_category_segments_keep_their_case():
    assert normalise_category_path("mens > T-SHIRTS") == ["mens", "T-SHIRTS"]


# --- check_required ------------------------------------------------------------------------

@pytest.mark.parametrize("item, reason", [
    ({"id": None, "title": "Shoe"}, "missing_id"),
    ({"id": "", "title": "Shoe"}, "missing_id"),
    ({"id": "1", "title": None}, "missing_title"),
    ({"id": "1", "title": ""}, "missing_title"),
])
def test_an_item_without_id_or_title_is_rejected(item, reason):
    with pytest.raises(Rejected) as caught:
        check_required(item)
    assert caught.value.reason == reason


# --- check_image ---------------------------------------------------------------------------

def test_a_real_jpeg_resolves_against_the_catalogue_folder():
    path, flag = check_image("images/8065.jpg", DATA / "fashion")
    assert (Path(path), flag) == (REAL_JPEG, None)


@pytest.mark.parametrize("magic", [
    b"\x89PNG\r\n\x1a\n" + b"\0" * 8, b"GIF89a" + b"\0" * 8, b"RIFF\x10\0\0\0WEBPVP8 ",
])
def test_png_gif_and_webp_are_recognised_by_their_magic_bytes(tmp_path, magic):
    (tmp_path / "pic.img").write_bytes(magic)
    assert check_image("pic.img", tmp_path) == (str(tmp_path / "pic.img"), None)


@pytest.mark.parametrize("name, content", [
    ("garbage.jpg", b"this is not an image"),
    ("empty.jpg", b""),
    ("missing.jpg", None),
])
def test_a_broken_image_is_flagged_not_rejected(tmp_path, name, content):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert check_image(name, tmp_path) == (None, "image_unreadable")


def test_a_directory_is_not_an_image(tmp_path):
    assert check_image(".", tmp_path) == (None, "image_unreadable")


@pytest.mark.parametrize("reference", [None, "", "  "])
def test_no_image_reference_is_flagged_no_image(reference):
    assert check_image(reference, DATA) == (None, "no_image")


@pytest.mark.parametrize("url", ["https://cdn.shop/x.jpg", "HTTP://cdn.shop/y.png"])
def test_image_urls_are_kept_without_fetching(url):
    assert check_image(url, None) == (url, None)


# --- content_hash, near_duplicate_key ------------------------------------------------------

def test_content_hash_is_16_hex_digits_and_stable():
    item = clean()
    assert re.fullmatch(r"[0-9a-f]{16}", content_hash(item))
    assert content_hash(item) == content_hash(dict(reversed(list(item.items()))))


@pytest.mark.parametrize("change", [{"title": "Other"}, {"price": 11.0}, {"category_path": ["Shoes"]},
                                    {"attributes": {"size": "42"}}, {"image": "x.jpg"}])
def test_content_hash_changes_with_indexed_content(change):
    item = clean()
    assert content_hash({**item, **change}) != content_hash(item)


@pytest.mark.parametrize("change", [{"flags": ["no_image", "x"]}, {"duplicate_group": "nd-1"}])
def test_content_hash_ignores_ingest_bookkeeping(change):
    item = clean()
    assert content_hash({**item, **change}) == content_hash(item)


@pytest.mark.parametrize("a, b", [
    (("Acme Water-Bottle, 1L", "Acme"), ("acme  water bottle 1l", "ACME")),
    (("ＮＩＫＥ Ａｉｒ Ｍａｘ ９０", "Nike"), ("nike air max 90!", "nike")),
    (("Shoe", None), ("shoe.", "")),
])
def test_near_identical_titles_of_one_brand_share_a_key(a, b):
    key = lambda t: near_duplicate_key({"title": t[0], "brand": t[1]})  # noqa: E731
    assert key(a) == key(b)


@pytest.mark.parametrize("a, b", [
    (("Water Bottle 1L", "Acme"), ("Water Bottle 2L", "Acme")),
    (("Water Bottle", "Acme"), ("Water Bottle", "Zeta")),
])
def test_different_titles_or_brands_get_different_keys(a, b):
    key = lambda t: near_duplicate_key({"title": t[0], "brand": t[1]})  # noqa: E731
    assert key(a) != key(b)


# --- clean_item ----------------------------------------------------------------------------

@pytest.mark.parametrize("fields, reason", [
    ({"title": "   "}, "missing_title"),
    ({"title": "<p></p>"}, "missing_title"),
    ({"id": None}, "missing_id"),
    ({"price": "abc"}, "price_unparseable"),
    ({"rating": 7}, "rating_out_of_range"),
    ({"__unparseable__": "{bad", "__error__": "invalid JSON"}, "unparseable"),
])
def test_a_rejection_keeps_its_reason_and_the_original_record(fields, reason):
    record = source_item(**fields)
    result = clean_item(record)
    assert (result.accepted, result.reason, result.record) == (False, reason, record)


@pytest.mark.parametrize("fields, key, value", [
    ({"title": "ＮＩＫＥ　Ａｉｒ"}, "title", "NIKE Air"),
    ({"title": "Black &amp; Decker Drill"}, "title", "Black & Decker Drill"),
    ({"description": "<p>Soft</p><p>Warm</p>"}, "description", "Soft Warm"),
    ({"description": "   "}, "description", None),
    ({"price": "¥1,299.00"}, "price", 1299.0),
    ({"price": None}, "price", None),
    ({"rating": "4.5"}, "rating", 4.5),
    ({"category_path": ["Shoes", "Running"]}, "category_path", ["Shoes", "Running"]),
    ({"attributes": {"size": " 42 ", "pattern": {"a": 1}, "blank": ""}}, "attributes",
     {"size": "42", "pattern": '{"a": 1}'}),
])
def test_clean_item_cleans_each_field(fields, key, value):
    assert clean(**fields)[key] == value


def test_an_item_with_a_broken_image_is_kept_and_flagged(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    result = clean_item(source_item(image="bad.jpg"), base_dir=tmp_path)
    assert result.accepted and result.item["image"] is None
    assert result.item["flags"] == ["image_unreadable"]


def test_an_item_with_a_real_image_has_no_flags(tmp_path):
    shutil.copy(REAL_JPEG, tmp_path / "shoe.jpg")
    item = clean_item(source_item(image="shoe.jpg"), base_dir=tmp_path).item
    assert (item["image"], item["flags"]) == (str(tmp_path / "shoe.jpg"), [])


def test_a_clean_item_carries_its_content_hash():
    item = clean()
    assert item["content_hash"] == content_hash(item)


# --- dedupe --------------------------------------------------------------------------------

def test_a_repeated_id_keeps_the_later_record_and_reports_the_earlier():
    earlier, other, later = clean(title="Old"), clean(id="sku-2", title="Other"), clean(title="New")
    kept, superseded, _ = dedupe([earlier, other, later])
    assert [i["title"] for i in kept] == ["Other", "New"]
    assert [(s["id"], s["reason"], s["record"]) for s in superseded] == [
        ("sku-1", "duplicate_id_superseded", earlier)]


def test_near_duplicate_titles_form_one_group_and_all_are_kept():
    items = [clean(id="a", title="Acme Water-Bottle, 1L"), clean(id="b", title="acme water bottle 1l"),
             clean(id="c", title="Something else")]
    kept, _, groups = dedupe(items)
    assert [i["id"] for i in kept] == ["a", "b", "c"]
    assert kept[0]["duplicate_group"] == kept[1]["duplicate_group"] == groups[0]["key"]
    assert "duplicate_group" not in kept[2]
    assert [g["ids"] for g in groups] == [["a", "b"]]


def test_dedupe_does_not_modify_its_input():
    items = [clean(id="a", title="Same"), clean(id="b", title="same")]
    dedupe(items)
    assert all("duplicate_group" not in i for i in items)
