"""The served ranker compiled to machine code: LightGBM's trees as one native function (lleaves).

LightGBM walks its trees node by node from a generic in-memory forest: about 16 ns a tree and
candidate, 0.2-0.7 ms for a query's hundred candidates. lleaves (a kept library, LLVM through
llvmlite) turns the model file into straight-line code with the thresholds inlined, which scores
the same hundred rows in about a third of that inside the ranking stage (a twentieth with the
caches hot; ``shopsearch bench ranker`` times both) and gives LightGBM's scores (the same trees, missing
values sent the same way; the sums differ in the last bits because the trees are added in blocks).

Compiling takes seconds, so the object code is cached beside the model in the registry
(``ranker/compiled/<key>.o``), written once by ``shopsearch train`` when its gate loads the
ranker and read by every process that serves it. The key names everything the code depends on: the model
file's bytes, the lleaves and llvmlite versions and the host CPU it was compiled for (a registry
copied to another machine compiles again instead of running another CPU's instructions). The
object file's SHA-256 is stored beside it and checked before it is loaded, and a compiled model
must reproduce LightGBM's scores on sample rows before it serves. Anything that fails (no lleaves,
no writable registry, a check that does not hold) leaves the ranker on LightGBM's own predict.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import lightgbm
import numpy as np

log = logging.getLogger(__name__)
SAMPLE_ROWS = 256  # rows of the self-check against LightGBM
TOLERANCE = 1e-9   # the sums' rounding differs by ~1e-15; anything larger is a different model


def cache_key(model_file: Path) -> str:
    """What the compiled code depends on, as one name: model bytes, compiler versions, host CPU."""
    # why: LLVM is a large native library, loaded only where a ranker is compiled
    import llvmlite
    import llvmlite.binding as llvm
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read this CPU's features: compiled for the generic CPU name
        features = ""
    parts = [hashlib.sha256(model_file.read_bytes()).hexdigest(), version("lleaves"), llvmlite.__version__,
             llvm.get_host_cpu_name(), features]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def compiled_predict(model_file: str | Path, booster: lightgbm.Booster) -> Callable[[np.ndarray], np.ndarray] | None:
    """``predict(x)`` through the compiled model of ``model_file`` (scores as ``booster.predict``
    gives them), or None when it cannot be had here; the reason is logged."""
    model_file = Path(model_file)
    try:
        import lleaves  # why: builds on LLVM (see cache_key); loaded only where a ranker is compiled
        cache = _cache_path(model_file)
        model = lleaves.Model(model_file=str(model_file))
        _compile(model, cache)
    except Exception as e:  # noqa: BLE001 - any failure of an optional accelerator keeps LightGBM's predict
        log.warning("ranker %s is not compiled (%s: %s); LightGBM predicts", model_file, type(e).__name__, e)
        return None

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict(np.ascontiguousarray(x, dtype=np.float64), n_jobs=1)

    if not _agrees(predict, booster):
        log.warning("ranker %s compiled to different scores; LightGBM predicts", model_file)
        if cache is not None:
            cache.unlink(missing_ok=True)
        return None
    return predict


def _cache_path(model_file: Path) -> Path | None:
    """Where this host's compiled code of ``model_file`` is kept; None when the folder is not writable
    and holds none (the model is then compiled in memory only)."""
    path = model_file.parent / "compiled" / f"{cache_key(model_file)}.o"
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path.parent, os.W_OK) else None


def _compile(model, cache: Path | None) -> None:
    """Compile ``model``, reading the cached object code when its checksum holds, else writing it."""
    if cache is None:
        model.compile()
        return
    digest = cache.with_suffix(".sha256")
    if cache.exists() and digest.exists() and digest.read_text().strip() == _sha256(cache):
        model.compile(cache=str(cache))
        return
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".o")
    os.close(fd)
    os.unlink(tmp)  # lleaves writes the object code only where no file is
    try:
        model.compile(cache=tmp)
        tmp_digest = Path(tmp).with_suffix(".sha256")
        tmp_digest.write_text(_sha256(Path(tmp)) + "\n")
        os.replace(tmp, cache)
        os.replace(tmp_digest, digest)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp).with_suffix(".sha256").unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _agrees(predict: Callable[[np.ndarray], np.ndarray], booster: lightgbm.Booster) -> bool:
    """Whether ``predict`` gives ``booster``'s scores on sample rows: values around each split
    threshold the model uses, and missing values."""
    x = _sample_rows(booster)
    iterations = booster.best_iteration if booster.best_iteration and booster.best_iteration > 0 else None
    expected = booster.predict(x, num_iteration=iterations, num_threads=1)
    return bool(np.allclose(predict(x), expected, rtol=0, atol=TOLERANCE))


def _sample_rows(booster: lightgbm.Booster) -> np.ndarray:
    """Rows that take many paths through the trees: each feature drawn from its split thresholds
    (a little below or above), with one value in ten missing."""
    rng = np.random.default_rng(0)
    columns = booster.num_feature()
    thresholds: list[list[float]] = [[] for _ in range(columns)]
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                if isinstance(node["threshold"], (int, float)):
                    thresholds[node["split_feature"]].append(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    x = rng.normal(size=(SAMPLE_ROWS, columns))
    for j, values in enumerate(thresholds):
        if values:
            x[:, j] = rng.choice(values, SAMPLE_ROWS) + rng.choice([-1e-6, 1e-6], SAMPLE_ROWS)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x
