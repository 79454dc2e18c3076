"""Search by photo (pure): a shopper's picture, already encoded and projected into the catalogue's
text space (``encoders/image.py`` features through the learned projection of ``ingest/fuse.py``),
answered by k-NN on ``image_vector`` (pictures that look alike) and on ``text_vector`` (titles that
describe what the picture shows), fused by min-max; typed words, when there are any, are searched
as usual and their ranked list is fused with the photo's.

>>> photo_ranked({"a": 0.9, "b": 0.8}, {"b": 0.7, "c": 0.6})[0][0]
'a'
>>> [d for d, _ in with_words([("w", 1.0), ("a", 0.5)], [("a", 1.0), ("z", 0.2)])][:2]
['a', 'w']
"""

from __future__ import annotations

from shopsearch.query.build import knn_body
from shopsearch.query.fuse import Ranked, fuse_minmax

IMAGE_WEIGHT = 0.7   # of the picture-to-picture list against picture-to-title: looks first
WORDS_WEIGHT = 0.5   # of the typed words' list against the photo's


def photo_bodies(vector: list[float], k: int, filters: list[dict], source: dict) -> list[dict]:
    """The two k-NN requests of a photo: on ``image_vector`` and on ``text_vector`` (same filters)."""
    return [knn_body(vector, k, k, filters, field="image_vector", fetch={"_source": source}),
            knn_body(vector, k, k, filters, field="text_vector", fetch={"_source": source})]


def photo_ranked(image_scores: dict[str, float], text_scores: dict[str, float],
                 image_weight: float = IMAGE_WEIGHT) -> Ranked:
    """The photo's own ranking: picture neighbours and title neighbours, min-max fused."""
    return fuse_minmax(text_scores, image_scores, image_weight)


def with_words(words: Ranked, photo: Ranked, words_weight: float = WORDS_WEIGHT) -> Ranked:
    """The typed words' ranked list fused with the photo's (min-max; a list alone is itself)."""
    if not words:
        return photo
    if not photo:
        return words
    return fuse_minmax(dict(photo), dict(words), words_weight)
