"""Multimodal fusion: image features projected into the text space, then mixed with the text vector.

Queries are text, so the image side must be reachable from text. The projection is a linear map
``W`` (1280 -> text dimension) learned from the catalogue's own (title, image) pairs with a
symmetric InfoNCE (CLIP) loss; the text encoder and the image encoder stay frozen, so only ``W``
is trained (a few seconds on CPU for thousands of pairs). Then for each item::

    image_vector = unit_length(features @ W)
    fused_vector = unit_length(alpha * text_vector + (1 - alpha) * image_vector)   # with an image
    fused_vector = text_vector                                                   # without one

``alpha`` (default 0.7) keeps the text dominant: titles carry brand, size and type that pixels do
not. The measured effect of the projection is reported by :func:`retrieval_recall`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ALPHA = 0.7


def unit_length(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Projection:
    """A learned image -> text-space map with what it was trained on."""
    weights: np.ndarray  # (image_dim, text_dim)
    meta: dict

    @property
    def version(self) -> str:
        return hashlib.sha256(self.weights.tobytes()).hexdigest()[:12]

    def project(self, features: np.ndarray) -> np.ndarray:
        return unit_length(features @ self.weights)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, weights=self.weights, meta=json.dumps(self.meta))
        return path

    @classmethod
    def load(cls, path: Path) -> "Projection":
        with np.load(path) as z:
            return cls(z["weights"].astype(np.float32), json.loads(str(z["meta"])))


def train_projection(text_vectors: np.ndarray, image_features: np.ndarray, epochs: int = 60,
                     temperature: float = 0.05, lr: float = 1e-3, batch_size: int = 256, seed: int = 0) -> Projection:
    """Learn W so that ``unit_length(image @ W)`` lands next to its own title's text vector."""
    import torch  # heavy: only the worker that fits projections needs it

    if len(text_vectors) != len(image_features) or len(text_vectors) < 2:
        raise ValueError("need at least two (text, image) pairs of equal count")
    g = torch.Generator().manual_seed(seed)
    t = torch.from_numpy(unit_length(text_vectors))
    f = torch.from_numpy(unit_length(image_features))
    w = torch.nn.Parameter(torch.randn(f.shape[1], t.shape[1], generator=g) / f.shape[1] ** 0.5)
    opt = torch.optim.Adam([w], lr=lr)
    n = len(t)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            img = torch.nn.functional.normalize(f[idx] @ w, dim=1)
            logits = img @ t[idx].T / temperature
            target = torch.arange(len(idx))
            loss = (torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    meta = {"method": "linear-infonce", "pairs": n, "epochs": epochs, "temperature": temperature, "seed": seed,
            "image_dim": int(f.shape[1]), "text_dim": int(t.shape[1])}
    return Projection(w.detach().numpy().astype(np.float32), meta)


def fuse(text_vectors: np.ndarray, image_vectors: np.ndarray, has_image: np.ndarray,
         alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Fused vectors: a weighted mix where an image exists, the text vector otherwise."""
    has = np.asarray(has_image, dtype=bool)[:, None]
    mixed = alpha * text_vectors + (1 - alpha) * image_vectors
    return unit_length(np.where(has, mixed, text_vectors))


def retrieval_recall(queries: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict[str, float]:
    """Recall@k of finding row i of ``targets`` for row i of ``queries`` (cosine), for held-out pairs."""
    sims = unit_length(queries) @ unit_length(targets).T
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1)
    return {f"recall@{k}": float(np.mean(ranks < k)) for k in ks}
