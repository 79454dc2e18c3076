"""Clean stage of ingest: small rules that turn a source item into a clean item or a rejection.

Each rule is a pure function with its own tests. Rejections carry a short snake_case
``reason`` so that ingest reports can count them; problems that should not cost a shop a
product (a missing or broken image) are *flags* on a kept item instead. The one rule that
touches the disk is :func:`check_image`, which reads an image's first bytes.

Reasons: unparseable, missing_id, missing_title, price_unparseable, price_negative,
rating_unparseable, rating_out_of_range, popularity_unparseable, popularity_negative,
duplicate_id_superseded (from :func:`dedupe`). Flags: no_image, image_unreadable.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

from shopsearch import hooks
from shopsearch.errors import Rejected
from shopsearch.index.fetch import MAX_KEYWORD_CHARS
from shopsearch.ingest.images import check_image
from shopsearch.ingest.read import ERROR, UNPARSEABLE


@dataclass(frozen=True)
class CleanResult:
    """Either a clean ``item`` or a rejection (``reason``, ``detail``, original ``record``)."""

    item: dict | None = None
    reason: str | None = None
    detail: str | None = None
    record: dict | None = None

    @property
    def accepted(self) -> bool:
        return self.item is not None


# --- text ----------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 h4 "
    "h5 h6 header hr li main nav ol option p pre section table tbody td tfoot th thead title tr ul"
    .split())
_HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})


class _TextOnly(HTMLParser):
    """Collects text outside script/style; a block tag's start or end adds a space."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def strip_html(text: str | None) -> str:
    """Text of an HTML fragment: tags and script/style contents gone, entities unescaped.

    Block elements (p, div, li, br, ...) are kept apart by a space; inline ones are not, and
    whitespace runs fold to one space.

    >>> strip_html("<p>Wash&nbsp;cold</p><p>Dry &amp; iron</p>")
    'Wash cold Dry & iron'
    """
    if not text:
        return ""
    text = str(text)
    if "<" not in text and "&" not in text:  # plain text: skip the parser (most catalogue rows)
        return " ".join(text.split())
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


def normalise_text(text: Any) -> str:
    """NFKC-fold text, drop control and zero-width characters, fold whitespace, strip.

    NFKC turns full-width letters, digits and punctuation into ASCII and the ideographic
    space into a plain one, while Chinese characters stay as they are.

    >>> normalise_text("耐克　ＡＩＲ\\u200b  ９０")
    '耐克 AIR 90'
    """
    if text is None:
        return ""
    folded = unicodedata.normalize("NFKC", str(text))
    kept = []
    for ch in folded:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs"):
            kept.append(ch)
    return " ".join("".join(kept).split())


def clean_text(value: Any) -> str | None:
    """A text field as it is indexed: HTML stripped, normalised; None when nothing is left."""
    if value is None:
        return None
    text = normalise_text(strip_html(str(value)))
    return text or None


# --- numbers -------------------------------------------------------------------------------

_CURRENCY = re.compile(r"(?i)\b(?:rs\.?|inr|usd|us\$|eur|gbp|rmb|cny|jpy)|[¥$€£₹元円]")
_NUMBER = r"\d[\d.,' ]*\d|\d"
_PRICE = re.compile(
    rf"^(?P<neg>-)?\s*(?P<lo>{_NUMBER})(?:\s*(?:-|–|—|~|to)\s*(?P<hi>{_NUMBER}))?$", re.IGNORECASE)


def _grouped(number: str, sep: str) -> bool:
    """True when ``sep`` splits ``number`` into thousands groups: 1-3 digits, then threes."""
    groups = number.split(sep)
    return 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def _parse_number(text: str) -> float:
    """One number with optional thousands separators and a '.' or ',' decimal mark."""
    for sep in (" ", "'"):
        if sep in text:
            head = re.split(r"[.,]", text)[0] if ("." in text or "," in text) else text
            if not _grouped(head, sep):
                raise ValueError(text)
            text = text.replace(sep, "")
    if "." in text and "," in text:
        decimal = "." if text.rfind(".") > text.rfind(",") else ","
        thousands = "," if decimal == "." else "."
        whole, _, frac = text.rpartition(decimal)
        if not _grouped(whole, thousands) or not frac.isdigit():
            raise ValueError(text)
        return float(whole.replace(thousands, "") + "." + frac)
    for mark in (",", "."):
        if text.count(mark) > 1:  # repeated marks can only be thousands separators
            if not _grouped(text, mark):
                raise ValueError(text)
            return float(text.replace(mark, ""))
    if "," in text:
        whole, _, frac = text.partition(",")
        # "1,299" is a thousands separator; "12,50" is a European decimal comma.
        return float(whole + frac) if len(frac) == 3 else float(whole + "." + frac)
    return float(text)


def parse_price(value: Any) -> float | None:
    """A price as a float, None when missing; raises :class:`Rejected` for garbage.

    Accepts numbers and strings with a currency sign or code (¥ ￥ $ € £ ₹ Rs. USD ...),
    thousands separators ("1,299", "1 299", "1.299.000") and a European decimal comma when
    unambiguous ("1.299,00", "12,50"; "1,299" reads as thousands and "1.299" as a decimal).
    A range "12-15" or "$12 - $15" gives its lower bound, the price a shopper can pay.

    >>> parse_price("¥1,299.00"), parse_price("€ 1.299,00"), parse_price(None)
    (1299.0, 1299.0, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise Rejected("price_unparseable", f"not a price: {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = _CURRENCY.sub(" ", normalise_text(value)).strip()
        if not text:
            if normalise_text(value):
                raise Rejected("price_unparseable", f"no number in {value!r}")
            return None
        match = _PRICE.match(" ".join(text.split()))
        if not match:
            raise Rejected("price_unparseable", f"cannot read a price in {value!r}")
        try:
            bounds = [_parse_number(match[g]) for g in ("lo", "hi") if match[g]]
        except ValueError:
            raise Rejected("price_unparseable", f"cannot read a price in {value!r}") from None
        number = -min(bounds) if match["neg"] else min(bounds)
    if not math.isfinite(number):
        raise Rejected("price_unparseable", f"not a finite price: {value!r}")
    if number < 0:
        raise Rejected("price_negative", f"negative price {value!r}")
    return number


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    text = normalise_text(value) if isinstance(value, str) else value
    if isinstance(text, str) and text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not normalise_text(value))


def check_rating(value: Any, scale: float = 5.0) -> float | None:
    """A rating as a float in [0, scale], None when missing; raises :class:`Rejected` otherwise.

    >>> check_rating("4.5"), check_rating("")
    (4.5, None)
    """
    if _missing(value):
        return None
    try:
        rating = _parse_float(value)
    except (TypeError, ValueError):
        raise Rejected("rating_unparseable", f"not a rating: {value!r}") from None
    if not 0 <= rating <= scale:
        raise Rejected("rating_out_of_range", f"rating {rating:g} is outside 0..{scale:g}")
    return rating


def check_popularity(value: Any) -> float | None:
    """A popularity count (sales, views) as a float >= 0, None when missing."""
    if _missing(value):
        return None
    try:
        count = _parse_float(value)
    except (TypeError, ValueError):
        raise Rejected("popularity_unparseable", f"not a count: {value!r}") from None
    if count < 0:
        raise Rejected("popularity_negative", f"negative popularity {value!r}")
    return count


# --- structure -----------------------------------------------------------------------------

_CATEGORY_SEPARATORS = re.compile(r"[>/|»›]")


def normalise_category_path(parts: str | Iterable[Any] | None) -> list[str]:
    """A category path as a list of clean segments, top level first.

    Accepts a list of segments or a string split on ">", "/", "|", "»" or "›" (each list item
    is split too). Segments keep their case; empties are dropped and a segment repeating the
    one before it (ignoring case) is collapsed, as in "Shoes > shoes > Running".

    >>> normalise_category_path("Apparel ›  Topwear / Shirts")
    ['Apparel', 'Topwear', 'Shirts']
    """
    if parts is None:
        return []
    if isinstance(parts, str):
        parts = [parts]
    path: list[str] = []
    for part in parts:
        for segment in _CATEGORY_SEPARATORS.split(normalise_text(part)):
            segment = segment.strip()
            if segment and not (path and path[-1].casefold() == segment.casefold()):
                path.append(segment)
    return path


def check_required(item: dict) -> None:
    """Raise :class:`Rejected` unless the cleaned item has a non-empty id and title."""
    if not item.get("id"):
        raise Rejected("missing_id", "the record has no product id")
    if not item.get("title"):
        raise Rejected("missing_title", f"product {item['id']} has no title")


# fields kept whole as keywords (doc values a result list is read from: ``index/fetch.py``)
KEYWORD_FIELDS = ("id", "title", "brand", "colour", "material", "gender")


def check_lengths(item: dict, limit: int = MAX_KEYWORD_CHARS) -> None:
    """Raise :class:`Rejected` when a field kept whole as a keyword, or a category segment, is over ``limit`` characters.

    OpenSearch would keep such a value only in ``_source`` (or refuse the document), and a result
    list read from doc values would show the product without it.

    >>> check_lengths({"id": "1", "title": "x" * 9000})
    Traceback (most recent call last):
    ...
    shopsearch.errors.Rejected: too_long: product 1: title has 9000 characters (at most 8191)
    """
    named = [(name, item.get(name)) for name in KEYWORD_FIELDS]
    named += [("category_path", segment) for segment in item.get("category_path") or ()]
    for name, value in named:
        if isinstance(value, str) and len(value) > limit:
            raise Rejected("too_long", f"product {item.get('id')}: {name} has {len(value)} characters (at most {limit})")


# --- identity ------------------------------------------------------------------------------

HASHED_FIELDS = ("id", "title", "description", "brand", "category_path", "price", "rating",
                 "rating_scale", "popularity", "image", "colour", "material", "gender", "attributes")


def content_hash(item: dict) -> str:
    """First 16 hex digits of a sha256 over the cleaned fields that affect encoding and indexing.

    Only the image *reference* is hashed, not the file's bytes; flags and duplicate groups are
    outputs of ingest, not content, and are left out.
    """
    canonical = {k: item.get(k) for k in HASHED_FIELDS}
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _clean_attributes(attributes: Any) -> dict:
    out = {}
    for key, value in (attributes or {}).items():
        name = normalise_text(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            kept = value
        else:
            kept = clean_text(json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value)
        if name and kept is not None:
            out[name] = kept
    return out


def clean_item(source_item: dict, base_dir: str | Path | None = None) -> CleanResult:
    """Apply every rule to one source item (from :func:`~.catalogue.apply_field_map`).

    Order: unparseable record, text fields, required id and title, price, rating, popularity,
    category path, lengths (:func:`check_lengths`), attributes, image. The first failing rule
    rejects; image problems only add a flag. A clean item has the canonical fields plus ``flags`` and ``content_hash``.
    """
    def reject(error: Rejected) -> CleanResult:
        return CleanResult(reason=error.reason, detail=error.detail, record=source_item)

    if UNPARSEABLE in source_item:
        return reject(Rejected("unparseable", str(source_item.get(ERROR) or "unreadable record")))
    item = {name: clean_text(source_item.get(name))
            for name in ("id", "title", "description", "brand", "colour", "material", "gender")}
    item["rating_scale"] = float(source_item.get("rating_scale") or 5.0)
    try:
        for _name, rule in hooks.cleaning_rules():
            rule(item, source_item)
    except Rejected as error:
        return reject(error)
    item["category_path"] = normalise_category_path(source_item.get("category_path"))
    try:
        check_lengths(item)
    except Rejected as error:
        return reject(error)
    item["attributes"] = _clean_attributes(source_item.get("attributes"))
    item["image"], flag = check_image(source_item.get("image"), base_dir)
    item["flags"] = [flag] if flag else []
    item["content_hash"] = content_hash(item)
    return CleanResult(item=item)


# --- the built-in cleaning rules, registered through the extension point ``cleaning_rules`` ---

def _rule_required(item: dict, source: dict) -> None:
    check_required(item)


def _rule_price(item: dict, source: dict) -> None:
    item["price"] = parse_price(source.get("price"))


def _rule_rating(item: dict, source: dict) -> None:
    item["rating"] = check_rating(source.get("rating"), item["rating_scale"])


def _rule_popularity(item: dict, source: dict) -> None:
    item["popularity"] = check_popularity(source.get("popularity"))


@hooks.hookimpl
def cleaning_rules():
    return [("required", _rule_required), ("price", _rule_price), ("rating", _rule_rating),
            ("popularity", _rule_popularity)]
