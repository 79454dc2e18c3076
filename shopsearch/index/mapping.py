"""Index mappings as data: load a template from ``mappings/``, fill its ``${name}`` slots, check vectors.

Pure functions; the only I/O is reading the package's own data files.

>>> render({"dimension": "${text_dim}", "name": "x"}, {"text_dim": 384})
{'dimension': 384, 'name': 'x'}
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any
from shopsearch.errors import MappingError

_SLOT = re.compile(r"^\$\{(\w+)\}$")
VECTOR_FIELDS = ("text_vector", "image_vector", "fused_vector")


def load_template(name: str = "products") -> dict:
    """The JSON template ``mappings/<name>.json``."""
    text = resources.files("shopsearch.mappings").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)



def render(template: Any, params: dict[str, Any]) -> Any:
    """Replace every string value that is exactly ``${name}`` with ``params[name]``."""
    if isinstance(template, dict):
        return {k: render(v, params) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, params) for v in template]
    if isinstance(template, str):
        m = _SLOT.match(template)
        if m:
            if m.group(1) not in params:
                raise MappingError(f"mapping template needs a value for {m.group(1)!r}")
            return params[m.group(1)]
    return template


def products_body(text_dim: int, meta: dict[str, Any], number_of_shards: int = 1,
                  number_of_replicas: int = 0, image_dim: int | None = None, fused_dim: int | None = None) -> dict:
    """The products index body: image and fused vectors live in the text space unless told otherwise."""
    body = render(load_template("products"), {
        "text_dim": text_dim, "image_dim": image_dim or text_dim, "fused_dim": fused_dim or text_dim,
        "number_of_shards": number_of_shards, "number_of_replicas": number_of_replicas})
    body = copy.deepcopy(body)
    body["mappings"]["_meta"] = dict(meta)
    return body


def vector_dimensions(mapping: dict) -> dict[str, int]:
    """``{field: dimension}`` of the k-NN fields in an index mapping (as GET _mapping returns it)."""
    props = mapping.get("properties", {})
    return {f: int(props[f]["dimension"]) for f in VECTOR_FIELDS if f in props}


def check_text_dimension(index: str, mapping: dict, encoder_name: str, encoder_dim: int) -> None:
    """Raise a clear error when an index's query-side vectors do not match the configured encoder."""
    dims = vector_dimensions(mapping)
    have = dims.get("text_vector")
    if have is not None and have != encoder_dim:
        built_with = mapping.get("_meta", {}).get("model", "another model")
        raise MappingError(
            f"index {index} holds {have}-dimensional text vectors (built with {built_with}), but the "
            f"configured encoder {encoder_name} gives {encoder_dim} dimensions. Set SHOPSEARCH_TEXT_MODEL "
            f"back, or build a new index version with `shopsearch reindex`.")
