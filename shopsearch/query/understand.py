"""Query understanding: a shopper's words become text to search, filters and a SKU flag.

Pure functions on plain data. :func:`understand` runs the stages in this order:

1. :func:`normalise_query` — NFKC (full-width → half-width), lower-case, fold whitespace.
2. :func:`looks_like_sku` — a model number is served by BM25 alone (the caller skips k-NN).
3. :func:`extract_filters` — price phrases first (so "under 50" is never read as anything
   else), then catalogue phrases, longest first: brand, colour and gender become filter
   clauses and leave the text; a category name only becomes ``category_hint`` (a soft boost
   for the caller) and stays in the text, because a wrong category filter loses recall.

>>> facets = Facets.from_values(colour=["Black", "Navy Blue"], gender=["Men", "Women"])
>>> u = understand("Navy Blue running shoes for MEN under $50", facets)
>>> u.text, u.filters
('running shoes', [{'term': {'colour': 'Navy Blue'}}, {'term': {'gender': 'Men'}}, {'range': {'price': {'lte': 50}}}])
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import cached_property

from shopsearch import hooks

# Single Chinese characters are substrings of too many words (白 in 蛋白粉 "protein powder",
# 红 in 红酒 "red wine"), so only the 色 forms are synonyms. Even 黑 alone was wrong in 5 of
# the 6 Taobao queries that have it without 色 (黑米 "black rice", 黑冰 a brand, 小黑瓶 a product).
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "grey": ("grey", "gray"), "gray": ("gray", "grey"), "navy": ("navy", "navy blue"),
    "黑色": ("black",), "白色": ("white",), "红色": ("red",), "蓝色": ("blue",),
    "藏青色": ("navy blue", "navy"), "灰色": ("grey", "gray"), "绿色": ("green",),
    "黄色": ("yellow",), "粉色": ("pink",), "粉红色": ("pink",), "棕色": ("brown",),
    "咖啡色": ("brown",), "紫色": ("purple",), "银色": ("silver",), "金色": ("gold",),
    "橙色": ("orange",), "米色": ("beige",), "卡其色": ("khaki",),
}
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "运动鞋": ("sports shoes",), "休闲鞋": ("casual shoes",), "手表": ("watches",),
    "连衣裙": ("dresses",), "T恤": ("tshirts", "t-shirts"), "衬衫": ("shirts",), "牛仔裤": ("jeans",),
    "手提包": ("handbags",), "背包": ("backpacks",), "凉鞋": ("sandals",), "拖鞋": ("flip flops",),
    "太阳镜": ("sunglasses",), "钱包": ("wallets",), "短裙": ("skirts",),
}
# A catalogue's colour facet often holds materials and finishes too (Home Depot's has "Wood",
# "Tree", "Steel"): only a value naming a colour becomes a colour filter ("christmas tree" must
# not lose "tree" to a filter); others stay in the text for BM25 and k-NN to match.
COLOUR_WORDS = frozenset(
    "black white red blue navy green yellow pink brown purple grey gray silver gold orange beige "
    "khaki maroon cream tan teal turquoise olive magenta lavender peach burgundy charcoal ivory "
    "violet mauve rose coral mustard nude off-white multicolour multicolor".split())
# Only explicit words: "boys" or a bare 女 ("女儿" is "daughter") never become a gender filter.
GENDER_WORDS: dict[str, tuple[str, ...]] = {
    "men": ("men",), "men's": ("men",), "mens": ("men",), "男士": ("men",),
    "women": ("women",), "women's": ("women",), "womens": ("women",), "女士": ("women",),
}
# Same length: a brand ("Black & Decker" aside) outranks a colour, which outranks a category.
FIELD_PRIORITY = {"brand": 0, "colour": 1, "gender": 2, "category": 3}
CONNECTORS = {"for", "in", "with", "and", "or", "of", "by", "from", "the"}

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\d|[.,]\d)"
_CUR = r"[$¥£€]"
_CUR_WORD = r"(?:dollars?\b|usd\b|bucks\b|元|块钱?)"
# "under 30 in. range hood" is a size, not a price: a bare number followed by a unit is skipped.
_NOT_UNIT = (r"(?!\s*(?:x\b|%|\"|'|(?:in|inch|inches|ft|feet|foot|gal|gallons?|lbs?|oz|mm|cm|m|v"
             r"|volts?|w|watts?|amps?|a|btu|psi|hp|sq|cu|pcs?|pk|pack|count|ct|qt|l|ml|kg|g)\b))")
_AMOUNT = rf"(?:{_CUR}\s*{_NUM}|{_NUM}{_NOT_UNIT})(?:\s*{_CUR_WORD})?"
_ZH_CUR = r"(?:元|块钱?)"
PRICE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("range", re.compile(rf"\bbetween\s*{_CUR}?\s*{_NUM}\s*(?:and|to|-)\s*{_AMOUNT}")),
    ("range", re.compile(rf"(?<![a-z0-9.]){_CUR}?\s*{_NUM}\s*(?:-|to|~|到|至)\s*{_CUR}?\s*{_NUM}"
                         rf"(?:\s*{_CUR_WORD})?")),
    ("lte", re.compile(rf"(?:\b(?:under|below|less than|cheaper than|up to|at most)\b|<=?|≤)"
                       rf"\s*{_AMOUNT}")),
    ("gte", re.compile(rf"(?:\b(?:over|above|more than|greater than|at least)\b|>=?|≥)\s*{_AMOUNT}")),
    ("lte", re.compile(rf"(?:低于|少于|不超过|不到|小于)\s*{_NUM}\s*{_ZH_CUR}?|{_NUM}\s*{_ZH_CUR}\s*(?:以下|以内|之内)")),
    ("gte", re.compile(rf"(?:高于|超过|大于|多于)\s*{_NUM}\s*{_ZH_CUR}?|{_NUM}\s*{_ZH_CUR}\s*以上")),
]

SKU_KEYWORDS = {"sku", "model", "part", "item", "upc", "mpn", "#"}
# A quantity or size with a unit ("120v", "3000psi", "2x4", "4x8wood", "4shelves") is not a code.
_UNITS = r"(?:in|ft|mm|cm|m|v|w|a|ah|mah|amps?|gal|lbs?|oz|btu|psi|hp|k|gb|tb|pcs?|pk|ct|qt|l|ml|kg|g|ga|awg)"
_UNIT_TOKEN = re.compile(rf"^\d[\d./]*(?:x[\d./]+)+[a-z]*$|^\d[\d./]*{_UNITS}$|^\d[\d./x]*[a-z]{{3,}}$")


def normalise_query(q: str) -> str:
    """The query in one canonical form: NFKC, lower-case, single spaces, typographic apostrophe folded.

    >>> normalise_query("  ＤＷ０２４０   Drill ")
    'dw0240 drill'
    >>> normalise_query("Women’s　黑色运动鞋")
    "women's 黑色运动鞋"
    """
    q = unicodedata.normalize("NFKC", q or "").replace("\u2019", "'").lower()
    return " ".join(q.split())


def rewrite_query(q: str) -> str:
    """The shopper's text after every registered query rewriter, in order (``hooks.query_rewriters``).

    Built in: ``normalise`` (:func:`normalise_query`), so with no shop plugin this is exactly it.

    >>> rewrite_query("  Red  SHOES ")
    'red shoes'
    """
    for _, rewrite in hooks.query_rewriters():
        q = rewrite(q)
    return q


def _is_code(token: str) -> bool:
    """One token that reads as a model number (see :func:`looks_like_sku` for the rule)."""
    token = token.lstrip("#")
    if not token.isascii() or _UNIT_TOKEN.match(token):
        return False
    parts = token.split("-")
    if not all(p.isalnum() for p in parts):
        return False  # "0.5", "3/4", "1-1/2": sizes and fractions
    if len(parts) > 1 and any(p.isalpha() and len(p) >= 3 for p in parts):
        return False  # "2-light", "3-way", "t-shirt": a number joined to a word
    joined = "".join(parts)
    if not any(c.isdigit() for c in joined):
        return False
    if joined.isdigit():
        return len(joined) >= 5
    return len(joined) >= 4 and sum(c.isdigit() for c in joined) >= 2  # "mast5er" is a typo


def looks_like_sku(q: str) -> bool:
    """True for a model-number query that BM25 alone should serve (k-NN adds only noise).

    The rule: the normalised query has one or two tokens, and either one token is a code, or
    the first is a keyword (``sku``, ``model``, ``part``, ``item``, ``#``...) and the second has a
    digit. A token is a code when it is ASCII, not a size or quantity with a unit ("120v",
    "2x4", "4shelves"), and is either a digit string of 5 or more ("12345", "12345-678"),
    or has letters and at least two digits, 4 or more characters once hyphens are dropped
    ("dw0240", "mx-5020", "rj45", "b07xj8c8f5"), with no hyphen part that is a word ("2-light").

    >>> [looks_like_sku(q) for q in ["DW0240", "dewalt dw0240", "sku 4411", "2x4", "0.5 in. x 10 ft."]]
    [True, True, True, False, False]
    """
    tokens = normalise_query(q).split()
    if not 1 <= len(tokens) <= 2:
        return False
    if len(tokens) == 2 and tokens[0] in SKU_KEYWORDS and any(c.isdigit() for c in tokens[1]):
        return True
    return any(_is_code(t) for t in tokens)


def _has_cjk(s: str) -> bool:
    return bool(_CJK.search(s))


def _resolve(table: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    """The catalogue's own value for the first candidate it has, matched case-insensitively."""
    for c in candidates:
        if normalise_query(c) in table:
            return table[normalise_query(c)]
    return None


@dataclass(frozen=True)
class Facets:
    """A catalogue's known facet values: normalised surface form → the value as indexed.

    Build one per catalogue version and reuse it: :attr:`phrases` is computed once.
    """
    colour: dict[str, str] = field(default_factory=dict)
    brand: dict[str, str] = field(default_factory=dict)
    category: dict[str, str] = field(default_factory=dict)
    gender: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, colour=(), brand=(), category=(), gender=()) -> "Facets":
        """Facets from the values as indexed; the first spelling of a value wins.

        >>> Facets.from_values(colour=["Navy Blue", "navy blue", "Black"]).colour
        {'navy blue': 'Navy Blue', 'black': 'Black'}
        """
        def table(values) -> dict[str, str]:
            out: dict[str, str] = {}
            for v in values:
                if v and normalise_query(v):
                    out.setdefault(normalise_query(v), v)
            return out
        return cls(table(colour), table(brand), table(category), table(gender))

    @cached_property
    def phrases(self) -> list[tuple[str, str, str]]:
        """Every (surface, field, value) to look for in a query, synonyms resolved to this catalogue.

        A synonym counts only when the catalogue has its value: 黑色 means ``Black`` in a shop
        that sells black things, and nothing in one without a colour facet.
        """
        out = [(s, "brand", v) for s, v in self.brand.items()]
        out += [(s, "colour", v) for s, v in self.colour.items() if COLOUR_WORDS & set(s.split())]
        out += [(s, "category", v) for s, v in self.category.items()]
        for f, synonyms in (("colour", COLOUR_SYNONYMS), ("category", CATEGORY_SYNONYMS), ("gender", GENDER_WORDS)):
            for surface, candidates in synonyms.items():
                value = _resolve(getattr(self, f), candidates)
                if value is not None:
                    out.append((normalise_query(surface), f, value))
        return out


@dataclass(frozen=True)
class Understood:
    """What a query asks for: ``text`` to search, filter clauses, and notes for ``explain``."""
    text: str
    filters: list[dict] = field(default_factory=list)
    sku: bool = False
    applied: list[str] = field(default_factory=list)
    category_hint: str | None = None
    browse: str | None = None  # the query names this category and nothing else (no colour, brand, price): show it


def _number(s: str) -> int | float:
    x = float(s.replace(",", ""))
    return int(x) if x.is_integer() else x


def find_price(text: str) -> tuple[list[tuple[int, int]], dict]:
    """The spans of price phrases and the price bounds they ask for.

    >>> find_price("drill under $50")
    ([(6, 15)], {'lte': 50})
    >>> find_price("100到200元")
    ([(0, 8)], {'gte': 100, 'lte': 200})
    >>> find_price("under 30 in. range hood")
    ([], {})
    """
    spans: list[tuple[int, int]] = []
    bounds: dict = {}
    for kind, pattern in PRICE_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in spans):
                continue
            bare = not re.search(rf"{_CUR}|{_CUR_WORD}", m.group())
            if kind == "range" and bare and not m.group().startswith("between"):
                continue  # "10-32 screws" is a thread size: a bare range needs a currency
            nums = [_number(n) for n in re.findall(_NUM, m.group())]
            if kind == "range":
                bounds["gte"], bounds["lte"] = sorted(nums[:2])
            else:
                bounds[kind] = nums[0]
            spans.append((m.start(), m.end()))
    return sorted(spans), bounds


def find_phrases(text: str, phrases: list[tuple[str, str, str]]) -> list[tuple[int, int, str, str]]:
    """Non-overlapping (start, end, field, value) matches, longest first, in text order.

    Latin phrases match whole words only ("men" is not in "women"); a phrase with Chinese in
    it matches as a substring, since Chinese has no spaces.

    >>> find_phrases("navy blue shirt", [("blue", "colour", "Blue"), ("navy blue", "colour", "Navy Blue")])
    [(0, 9, 'colour', 'Navy Blue')]
    """
    found = []
    for surface, f, value in phrases:
        if surface not in text:
            continue
        pattern = re.escape(surface) if _has_cjk(surface) else rf"(?<![a-z0-9]){re.escape(surface)}(?![a-z0-9])"
        found += [(m.start(), m.end(), f, value) for m in re.finditer(pattern, text)]
    found.sort(key=lambda m: (m[0] - m[1], m[0], FIELD_PRIORITY[m[2]]))
    chosen: list[tuple[int, int, str, str]] = []
    for m in found:
        if all(m[1] <= c[0] or c[1] <= m[0] for c in chosen):
            chosen.append(m)
    return sorted(chosen)


def remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """The text without the spans, with stray punctuation and dangling connectors tidied away.

    >>> remove_spans("running shoes for men", [(18, 21)])
    'running shoes'
    """
    for s, e in sorted(spans, reverse=True):
        text = text[:s] + " " + text[e:]
    tokens = [t for t in text.split() if any(c.isalnum() for c in t)]
    while tokens and tokens[-1] in CONNECTORS:
        tokens.pop()
    while tokens and tokens[0] in CONNECTORS:
        tokens.pop(0)
    return " ".join(tokens).strip("的")


def facet_clause(f: str, values: list[str]) -> dict:
    """One clause per field: ``term`` for one value, ``terms`` (any of) for several.

    Two colours must be OR-ed: "black and white" would match nothing as two ``term`` filters.
    """
    return {"term": {f: values[0]}} if len(values) == 1 else {"terms": {f: values}}


def extract_filters(q: str, facets: Facets) -> Understood:
    """Price, brand, colour and gender phrases turned into filter clauses; a category into a hint.

    ``q`` should be normalised. If nothing but filter words is left, the text stays ``q``.

    >>> u = extract_filters("黑色运动鞋", Facets.from_values(colour=["Black"], category=["Sports Shoes"]))
    >>> u.text, u.filters, u.category_hint, u.browse
    ('运动鞋', [{'term': {'colour': 'Black'}}], 'Sports Shoes', None)
    >>> extract_filters("运动鞋", Facets.from_values(colour=["Black"], category=["Sports Shoes"])).browse
    'Sports Shoes'
    >>> extract_filters("fresh fruits", Facets.from_values(category=["fresh fruits"])).browse
    'fresh fruits'
    >>> extract_filters("dried fruits snack", Facets.from_values(category=["fresh fruits"])).browse
    """
    price_spans, bounds = find_price(q)
    masked = "".join(" " if any(s <= i < e for s, e in price_spans) else c for i, c in enumerate(q))
    matches = find_phrases(masked, facets.phrases)
    values: dict[str, list[str]] = {}
    applied: list[str] = []
    hint = None
    for s, e, f, value in matches:
        if f == "category":
            hint = hint or value
            applied.append(f"category hint: {value} (from '{q[s:e]}')")
        elif value not in values.setdefault(f, []):
            values[f].append(value)
            applied.append(f"{f} = {value} (from '{q[s:e]}')")
    filters = [facet_clause(f, values[f]) for f in ("brand", "colour", "gender") if values.get(f)]
    if bounds:
        filters.append({"range": {"price": bounds}})
        asked = ", ".join(f"{op} {bounds[op]}" for op in ("gte", "lte") if op in bounds)
        applied.append(f"price {asked} (from {', '.join(repr(q[s:e]) for s, e in price_spans)})")
    removed = price_spans + [(s, e) for s, e, f, _ in matches if f != "category"]
    text = remove_spans(q, removed) if removed else q
    browse = None
    if hint is not None and not values and not price_spans and not remove_spans(q, [(s, e) for s, e, _, _ in matches]):
        browse = hint
        applied.append(f"browse: {hint} (the query names a category and nothing else)")
    return Understood(text=text or q, filters=filters, applied=applied, category_hint=hint, browse=browse)


def understand(q: str, facets: Facets) -> Understood:
    """Normalise, flag a model number, then extract filters (the stage order of this module).

    >>> u = understand("ＤＷ０２４０", Facets())
    >>> u.text, u.sku, u.applied
    ('dw0240', True, ['sku: lexical only'])
    """
    normalised = normalise_query(q)
    sku = looks_like_sku(normalised)
    u = extract_filters(normalised, facets)
    return replace(u, sku=sku, applied=u.applied + ["sku: lexical only"] if sku else u.applied)
