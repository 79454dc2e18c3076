"""The model registry: every fine-tuned model in a versioned directory, with its metadata beside it.

Layout (``models_dir`` is the ``models_dir`` setting, or ``<home>/models``)::

    <models_dir>/<version>/bi-encoder/      sentence-transformers model (what the index is encoded with)
    <models_dir>/<version>/cross-encoder/   optional re-ranker (sentence_transformers.CrossEncoder)
    <models_dir>/<version>/bi-encoder-adapter/, cross-encoder-adapter/
                                            the LoRA adapters of a LoRA run (peft), merged into the two above
    <models_dir>/<version>/ranker/          optional learned ranker: model.txt (LightGBM), card.json (model card),
                                            title_stats.json, compiled/ (its machine code per host CPU)
    <models_dir>/<version>/model.json       metadata

A version holds at least one part: a fine-tuning run registers a bi-encoder (and cross-encoder),
``shopsearch train`` a ranker alone or with encoders. The ranker's card (it gains the gate's figures
after registration) and its ``compiled/`` machine code (one file per host CPU) are not hashed; its
``model.txt`` and title statistics are.

``model.json`` lives outside the weight directories, so recording a metric or a gate decision
never changes the files the encoder fingerprints (``encoders.text.fingerprint``), and the sha256 of
every weight file recorded at registration lets :meth:`ModelRegistry.verify_hashes` prove that
the weights served are the ones that were evaluated. Fields: ``version``, ``created_at``,
``base_model``, ``base_version``, ``window`` (training data ``since``/``until``), ``data`` (the
``TrainingData.summary()``), ``params``, ``metrics``, ``files`` (sha256 per weight and adapter file),
``adapters`` (the adapter directories present), ``gate``
(``decision``, ``numbers``, ``margin``, ``judgments``, ``at``), ``status`` and ``history``;
``onnx`` (per part: which ONNX variant serves and its gate's figures, :meth:`ModelRegistry.record_onnx`).

Status: ``candidate`` when registered; ``rejected`` when the gate says no; ``promoted`` when a
rollout makes it live; ``retired`` when a later model replaces it. The gate only records; moving
an alias is rollout's job, which then calls :meth:`ModelRegistry.set_status`.

Every write goes through :func:`shopsearch.files.write_json_atomic` (a temporary file in the same
directory renamed over ``model.json``), under an exclusive cross-process lock
(:func:`shopsearch.files.locked`, filelock) so two processes updating one model cannot lose each
other's change.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from shopsearch.errors import RegistryError
from shopsearch.files import locked, read_json, write_json_atomic

STATUSES = ("candidate", "promoted", "rejected", "retired")
PARTS = ("bi-encoder", "cross-encoder", "ranker")
ADAPTERS = ("bi-encoder-adapter", "cross-encoder-adapter")  # beside each encoder part, never inside it (learn/lora.py)
UNHASHED = ("ranker/card.json",)  # written after registration (the gate's figures); describes, never serves
# each host's machine code of ranker/model.txt (query/compiled_ranker.py): derived from the hashed
# model file, written when a host first loads it, checked against LightGBM's scores before it serves
UNHASHED_DIRS = ("ranker/compiled/",)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def models_dir(settings=None, models_dir: str | os.PathLike | None = None) -> Path:
    """``models_dir`` if given, else the settings' registry (``Settings.models_path``)."""
    if models_dir:
        return Path(os.path.expanduser(str(models_dir)))
    if settings is None:
        raise ValueError("give settings or models_dir")
    return settings.models_path


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second with a ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def file_hashes(directory: Path, relative_to: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, keyed by its path relative to ``relative_to``."""
    out = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[f.relative_to(relative_to).as_posix()] = h.hexdigest()
    return out


class ModelRegistry:
    """The models under one directory. ``ModelRegistry.from_settings(settings)`` for the configured one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings, models_dir_override: str | os.PathLike | None = None) -> "ModelRegistry":
        return cls(models_dir(settings, models_dir_override))

    # --- names and paths -------------------------------------------------------------------

    def new_version(self, now: datetime | None = None, prefix: str = "ft") -> str:
        """A fresh version name, ``ft-YYYYMMDD-HHMMSS`` (UTC), suffixed ``-2``, ``-3``... if taken."""
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
        name, n = f"{prefix}-{stamp}", 1
        while (self.root / name).exists():
            n += 1
            name = f"{prefix}-{stamp}-{n}"
        return name

    def path(self, version: str) -> Path:
        if not _VERSION.match(version or ""):
            raise RegistryError(f"not a model version name: {version!r}")
        return self.root / version

    def part_dir(self, version: str, part: str = "bi-encoder") -> Path:
        """Where a weight directory of ``version`` lives (train into it, then :meth:`register`)."""
        if part not in PARTS:
            raise RegistryError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        return self.path(version) / part

    def resolve(self, version: str, part: str = "bi-encoder") -> Path:
        """The weight directory of a registered version (for ``load_text_encoder`` or the re-ranker)."""
        self.load(version)
        directory = self.part_dir(version, part)
        if not directory.is_dir():
            raise RegistryError(f"model {version} has no {part} directory ({directory})")
        return directory

    def adapter(self, version: str, part: str = "bi-encoder") -> Path:
        """The LoRA adapter directory of a registered version's ``part`` (``RegistryError`` if it has none)."""
        self.load(version)
        directory = self.part_dir(version, part).with_name(f"{part}-adapter")
        if not directory.is_dir():
            raise RegistryError(f"model {version} has no {part} adapter ({directory}): it was not trained with LoRA")
        return directory

    def _hashed(self, directory: Path) -> dict[str, str]:
        files = {}
        for name in PARTS + ADAPTERS:
            if (directory / name).is_dir():
                files.update(file_hashes(directory / name, directory))
        return {f: h for f, h in files.items() if f not in UNHASHED and not f.startswith(UNHASHED_DIRS)}

    # --- reading -----------------------------------------------------------------------------

    def load(self, version: str) -> dict:
        meta = self.path(version) / "model.json"
        if not meta.exists():
            raise RegistryError(f"no registered model {version!r} in {self.root}")
        return read_json(meta)

    def list(self, status: str | None = None) -> list[dict]:
        """Every registered model, oldest first (by ``created_at``, then version), optionally of one status."""
        if not self.root.is_dir():
            return []
        out = [read_json(p) for p in self.root.glob("*/model.json")]
        if status:
            out = [m for m in out if m.get("status") == status]
        return sorted(out, key=lambda m: (m.get("created_at") or "", m["version"]))

    # --- writing -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, version: str):
        directory = self.path(version)
        directory.mkdir(parents=True, exist_ok=True)
        with locked(directory / ".lock"):
            yield directory / "model.json"

    def _update(self, version: str, change) -> dict:
        with self._locked(version) as meta_path:
            if not meta_path.exists():
                raise RegistryError(f"no registered model {version!r} in {self.root}")
            meta = read_json(meta_path)
            change(meta)
            write_json_atomic(meta_path, meta)
            return meta

    def register(self, version: str, *, base_model: str, base_version: str | None = None,
                 window: dict | None = None, data: dict | None = None, params: dict | None = None,
                 metrics: dict | None = None, catalogue: str | None = None, created_at: str | None = None) -> dict:
        """Record a trained model whose weights already sit in ``part_dir(version, ...)``; status ``candidate``.

        Hashes every file of each part present (``bi-encoder/``, ``cross-encoder/``, ``ranker/``; at
        least one) and of the LoRA adapter directories (where present). Registering a version again
        returns its entry unchanged when the weights are the same files (a resumed pipeline step),
        and is refused when they differ (recorded hashes never change).
        """
        directory = self.path(version)
        if not any((directory / part).is_dir() for part in PARTS):
            raise RegistryError(f"{directory} holds no {' / '.join(PARTS)} directory: train into part_dir({version!r}) first")
        files = self._hashed(directory)
        meta = {"version": version, "created_at": created_at or now_iso(), "catalogue": catalogue,
                "base_model": base_model, "base_version": base_version,
                "window": window or {"since": None, "until": None}, "data": data or {}, "params": params or {},
                "metrics": metrics or {}, "files": files,
                "parts": [p for p in PARTS if (directory / p).is_dir()],
                "adapters": [a for a in ADAPTERS if (directory / a).is_dir()], "gate": None, "status": "candidate",
                "history": [{"status": "candidate", "at": now_iso()}]}
        with self._locked(version) as meta_path:
            if meta_path.exists():
                existing = read_json(meta_path)
                if existing.get("files") == files:
                    return existing
                raise RegistryError(f"model {version} is already registered with other weight files")
            write_json_atomic(meta_path, meta)
        return meta

    def record_metrics(self, version: str, metrics: dict) -> dict:
        """Merge ``metrics`` into the model's metrics."""
        return self._update(version, lambda m: m["metrics"].update(metrics))

    def record_gate(self, version: str, decision: str, numbers: dict, margin: float, judgments: str) -> dict:
        """Record the evaluation gate: ``accept`` leaves the status as is, ``reject`` sets ``rejected``."""
        if decision not in ("accept", "reject"):
            raise RegistryError(f"gate decision must be 'accept' or 'reject', got {decision!r}")

        def change(meta: dict) -> None:
            meta["gate"] = {"decision": decision, "numbers": numbers, "margin": margin,
                            "judgments": str(judgments), "at": now_iso()}
            if decision == "reject":
                _set(meta, "rejected")
        return self._update(version, change)

    def record_onnx(self, version: str, part: str, card: dict) -> dict:
        """Record which ONNX variant of ``part`` serves and its gate's figures (``onnx.<part>``; see ``learn/onnx_gate.py``)."""
        if part not in PARTS:
            raise RegistryError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        return self._update(version, lambda meta: meta.setdefault("onnx", {}).__setitem__(part, card))

    def set_status(self, version: str, status: str) -> dict:
        """Set ``candidate``, ``promoted``, ``rejected`` or ``retired`` (the change is kept in ``history``)."""
        if status not in STATUSES:
            raise RegistryError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return self._update(version, lambda meta: _set(meta, status))

    # --- integrity ---------------------------------------------------------------------------

    def verify_hashes(self, version: str) -> dict[str, Any]:
        """Compare the weight files with the recorded sha256: ``{"ok", "changed", "missing", "extra"}``."""
        meta = self.load(version)
        directory = self.path(version)
        now = self._hashed(directory)
        recorded = meta["files"]
        changed = sorted(f for f in recorded if f in now and now[f] != recorded[f])
        missing = sorted(f for f in recorded if f not in now)
        extra = sorted(f for f in now if f not in recorded)
        return {"ok": not (changed or missing or extra), "changed": changed, "missing": missing, "extra": extra}



def _set(meta: dict, status: str) -> None:
    meta["status"] = status
    meta.setdefault("history", []).append({"status": status, "at": now_iso()})


def resolve(settings, version: str, part: str = "bi-encoder", models_dir_override: str | os.PathLike | None = None) -> Path:
    """The weight directory of a registered ``version`` in the configured registry (``RegistryError`` if unknown).

    The module-level shortcut for ``ModelRegistry.from_settings(settings).resolve(version, part)``.
    """
    return ModelRegistry.from_settings(settings, models_dir_override).resolve(version, part)


def list_models(settings, status: str | None = None, models_dir_override: str | os.PathLike | None = None) -> list[dict]:
    """Every registered model of the configured registry, oldest first (see :meth:`ModelRegistry.list`)."""
    return ModelRegistry.from_settings(settings, models_dir_override).list(status)
