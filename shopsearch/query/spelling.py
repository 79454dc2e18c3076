"""Spelling correction: a shopper's misspelt words become the catalogue's words ("did you mean").

Pure functions on plain data; the vocabulary's I/O (the index's titles and attribute values, the
query log) is in ``live.py``, which builds one :class:`Speller` per index version.

The vocabulary is the catalogue's own words with their document frequencies; words shoppers
searched (the query log, ``ubi_queries``) add to the frequency of catalogue words only, so a
misspelling typed often never becomes "correct". Candidates are words within a small
Damerau-Levenshtein distance, found by SymSpell's symmetric-delete index (``symspellpy``): the
closest first, the most frequent among them. A word is left alone when the catalogue has it,
when it holds a digit (model numbers, sizes: ``dw0240``, ``2x6``, ``20v``), when it is shorter
than ``min_length`` or not Latin (Chinese has no spelling in this sense).

>>> speller = Speller.from_counts({"toilets": 120, "toilet": 300, "american": 80, "standard": 400, "champion": 30})
>>> speller.correct("americian standard champion 4 toliets").text
'american standard champion 4 toilets'
>>> speller.correct("dw0240 standard").changes
[]
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from symspellpy import SymSpell, Verbosity

# first letters a shopper may swap for one another because they sound alike
SOUND_ALIKE = {("k", "c"), ("c", "k"), ("c", "s"), ("s", "c"), ("w", "v"), ("v", "w")}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_LATIN = re.compile(r"^[a-z]+(?:'[a-z]+)?$")


def words(text: str) -> list[str]:
    """The lower-case words of a text, as the vocabulary counts them.

    >>> words("DEWALT 20-Volt Max Lithium-Ion Drill's Kit")
    ['dewalt', '20', 'volt', 'max', 'lithium', 'ion', "drill's", 'kit']
    """
    return _WORD.findall((text or "").lower())


def count_words(texts: Iterable[str], weights: Iterable[int] | None = None) -> Counter:
    """Document frequency of each word over ``texts`` (a word counts once per text, or ``weight`` times).

    >>> count_words(["white door", "white white paint"])["white"]
    2
    >>> count_words(["white door"], [40])["door"]
    40
    """
    counts: Counter = Counter()
    for text, weight in zip(texts, weights if weights is not None else iter(lambda: 1, None)):
        for w in set(words(text)):
            counts[w] += weight
    return counts


# inflections the index's stemmer (kstem) folds: a word is known when one of its stems is
_SUFFIXES = (("'s", ""), ("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
             ("d", ""))


def stems(word: str) -> list[str]:
    """The word and the forms an English suffix rule leaves of it.

    >>> stems("dowels"), stems("filing")
    (['dowels', 'dowel'], ['filing', 'fil', 'file'])
    """
    return [word] + [word[: -len(end)] + add for end, add in _SUFFIXES if word.endswith(end) and len(word) > len(end) + 2]


@dataclass(frozen=True)
class Correction:
    """A query after spelling correction: its ``text`` and the ``(word, correction)`` pairs changed."""
    text: str
    changes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class Speller:
    """Corrects the words of a query that the catalogue does not know (build one per index version)."""

    def __init__(self, counts: Mapping[str, int], max_edits: int = 2, min_length: int = 4,
                 dictionary: frozenset[str] = frozenset()):
        self.counts, self.max_edits, self.min_length = dict(counts), max_edits, min_length
        # words of the language the catalogue lacks but that are no typo ("jogging" in a fashion
        # shop that sells "jeggings"): never corrected, never a correction
        self.dictionary = dictionary
        self._index = SymSpell(max_dictionary_edit_distance=max_edits, prefix_length=7)
        for word, n in self.counts.items():
            if n > 0 and _LATIN.match(word):  # only words a misspelling could be corrected to
                self._index.create_dictionary_entry(word, n)

    @classmethod
    def from_counts(cls, catalogue: Mapping[str, int], queries: Mapping[str, int] | None = None,
                    max_edits: int = 2, min_length: int = 4, dictionary: frozenset[str] = frozenset()) -> "Speller":
        """A speller over the catalogue's words; query-log counts add to the words the catalogue has.

        >>> Speller.from_counts({"combo": 3}, {"combo": 10, "kombo": 50}).counts
        {'combo': 13}
        """
        queries = queries or {}
        return cls({w: n + queries.get(w, 0) for w, n in catalogue.items()}, max_edits, min_length, dictionary)

    def __len__(self) -> int:
        return len(self.counts)

    def edits_for(self, word: str) -> int:
        """How many edits a word may be away from its correction: 1 up to 5 letters, else ``max_edits``.

        >>> Speller({}).edits_for("kombo"), Speller({}).edits_for("brakets")
        (1, 2)
        """
        return min(self.max_edits, 1 if len(word) <= 5 else 2)

    def known(self, word: str) -> bool:
        """The catalogue has the word or an inflection of it ("dowels", "filing": dowel, file), or
        the language does (``dictionary``: "jogging" is no typo of "jegging").

        >>> Speller({"dowel": 3, "file": 2}).known("dowels"), Speller({"file": 2}).known("filing")
        (True, True)
        >>> Speller({"jegging": 5}).correct_word("jogging"), Speller({"jegging": 5}, dictionary=frozenset({"jogging"})).correct_word("jogging")
        ('jegging', 'jogging')
        """
        return word in self.dictionary or any(form in self.counts for form in stems(word))

    def correct_word(self, word: str) -> str:
        """The word, or the catalogue's word it most likely misspells.

        Candidates keep the first letter, or swap it for one that sounds alike ("kombo": combo):
        shoppers rarely mistype it, and "need" is not "seed". The closest, then the most frequent.

        >>> s = Speller({"brackets": 50, "rackets": 2, "combo": 9, "seed": 40, "sink": 5})
        >>> [s.correct_word(w) for w in ("brakets", "kombo", "20v", "rackets", "need", "sinks")]
        ['brackets', 'combo', '20v', 'rackets', 'need', 'sinks']
        """
        if len(word) < self.min_length or not _LATIN.match(word) or self.known(word):
            return word
        found = [c for c in self._index.lookup(word, Verbosity.ALL, max_edit_distance=self.edits_for(word))
                 if c.term[0] == word[0] or (word[0], c.term[0]) in SOUND_ALIKE]
        return min(found, key=lambda c: (c.distance, -c.count, c.term)).term if found else word

    def correct(self, text: str) -> Correction:
        """Every word of a normalised query corrected on its own; spacing and other tokens kept.

        >>> Speller({"metal": 90, "brackets": 40}).correct("2x6 metal brakets")
        Correction(text='2x6 metal brackets', changes=[('brakets', 'brackets')])
        """
        changes: list[tuple[str, str]] = []
        out = []
        for token in text.split(" "):
            fixed = self.correct_word(token)
            if fixed != token:
                changes.append((token, fixed))
            out.append(fixed)
        return Correction(" ".join(out), changes)
