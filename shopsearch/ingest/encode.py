"""Encode stage: clean items -> text, image and fused vectors (runs on the ``encode`` queue).

The text that is encoded is the title, followed by the brand (when the title lacks it) and the
category path: shoppers' queries name product types that titles often leave implicit.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from shopsearch.encoders.image import image_encoder
from shopsearch.encoders.text import item_text, text_encoder
from shopsearch.ingest.fuse import Projection, fuse, train_projection
from shopsearch.settings import Settings


def pack(vectors: np.ndarray) -> str:
    """float32 rows -> base64 (compact in a task message, exact)."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).decode("ascii")


def unpack(data: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype=np.float32).reshape(-1, dim)


def encode_items(items: list[dict], text_encoder, image_encoder=None, projection: Projection | None = None,
                 alpha: float = 0.7) -> dict:
    """Vectors for a chunk: ``{"text", "image", "fused", "has_image", "dim"}``; vectors packed.

    Items whose image cannot be read keep a text-only fused vector and get the flag
    ``image_unreadable``.
    """
    text = text_encoder.encode([item_text(i) for i in items])
    dim = text.shape[1]
    image = np.zeros_like(text)
    has = np.zeros(len(items), dtype=bool)
    with_image = [k for k, i in enumerate(items) if i.get("image") and not str(i["image"]).startswith(("http://", "https://"))]
    if image_encoder is not None and projection is not None and with_image:
        feats, ok = image_encoder.encode_paths([items[k]["image"] for k in with_image])
        proj = projection.project(feats)
        for row, k in enumerate(with_image):
            if ok[row]:
                image[k], has[k] = proj[row], True
            else:
                items[k].setdefault("flags", []).append("image_unreadable")
    fused = fuse(text, image, has, alpha)
    return {"dim": dim, "text": pack(text), "image": pack(image), "fused": pack(fused),
            "has_image": has.tolist(), "flags": [i.get("flags", []) for i in items]}


def load_projection(path: str | None) -> Projection | None:
    return Projection.load(Path(path)) if path else None


def by_text_length(items: list[dict]) -> list[dict]:
    """Items ordered by the length of the text they are encoded from (stable).

    Chunks cut from this order hold texts of about one length, so the encoder pads each batch
    little, as it does when it sorts one call's texts itself (the raw encoder of ``bench ingest``
    encodes the whole catalogue in one call). Documents are keyed by id, so order is free.

    >>> [i["id"] for i in by_text_length([{"id": "a", "title": "long title"}, {"id": "b", "title": "mug"}])]
    ['b', 'a']
    """
    return sorted(items, key=lambda i: len(item_text(i)))


def encode_chunk(settings: Settings, payload: dict) -> dict:
    """Encode one chunk payload (``index``, ``chunk``, ``model``, ``projection``, ``items``) with the
    model recorded for its index; returns the payload with ``vectors`` and ``model_version``."""
    encoder = text_encoder(settings.replace(text_model=payload["model"]))
    projection = load_projection(payload.get("projection"))
    images = image_encoder(settings.device) if projection is not None else None
    vectors = encode_items(payload["items"], encoder, images, projection, payload.get("alpha", 0.7))
    return {**payload, "vectors": vectors, "model_version": encoder.version}


def fit_projection(settings: Settings, payload: dict) -> dict:
    """Learn the image -> text projection from (text, image path) pairs; saves it, returns its ``_meta`` entry."""
    encoder = text_encoder(settings.replace(text_model=payload["model"]))
    feats, ok = image_encoder(settings.device).encode_paths([i["image"] for i in payload["items"]])
    keep = [k for k, good in enumerate(ok) if good]
    texts = encoder.encode([item_text(payload["items"][k]) for k in keep])
    projection = train_projection(texts, feats[keep], seed=payload.get("seed", 0))
    path = Path(settings.home_path, "models", "projections", f"{payload['index']}-{projection.version}.npz")
    projection.save(path)
    return {"path": str(path), "version": projection.version, "pairs": len(keep), "meta": projection.meta}
