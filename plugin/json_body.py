"""Request bodies as JSON: parsed once, with a depth bound and finite numbers, or a clear 400.

Every JSON body the middleware reads (a shopper search posted as JSON, events, admin calls, the
``ext.shopsearch`` opt-in, a keyed write checked for scripts in ``safety.py``) comes through
:func:`parse_json`, so each refusal says the same thing for the same fault.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from shopsearch.plugin.errors import BadRequest

# Deeper than any shopper request or event needs; a deeper body is refused before any work on it.
MAX_JSON_DEPTH = 32


def parse_json_body(required: bool = False, kinds: tuple[type, ...] = (dict,)) -> Any:
    """The request body as JSON of one of ``kinds`` (an object by default); ``{}`` when there is
    none and it is not required.

    Raises :class:`BadRequest` for an empty required body, text that is not UTF-8, malformed
    JSON, ``NaN``/``Infinity``, nesting deeper than :data:`MAX_JSON_DEPTH`, or another kind of
    value. The Content-Type is not checked: ``curl -d '{...}'`` sends a form type.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    body = parse_json(raw)
    if not isinstance(body, kinds):
        wanted = " or ".join("a JSON object" if k is dict else "an array" for k in kinds)
        raise BadRequest(f"the body must be {wanted}, not {_json_kind(body)}")
    return body


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON, or :class:`BadRequest` saying what is wrong with it.

    >>> parse_json(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> for bad in (b'{"a": NaN}', b'[' * 40 + b']' * 40, b'{"a": 1e400}', b'{"a": '):
    ...     try:
    ...         parse_json(bad)
    ...     except BadRequest as e:
    ...         print(str(e)[:48])
    the body is not valid JSON: NaN is not a JSON nu
    the body is nested deeper than 32 levels
    the body is not valid JSON: 1e400 is not a finit
    the body is not valid JSON: Expecting value (lin
    """
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except ValueError as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if json_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def json_depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value`` (a scalar is 0), without recursion.

    >>> json_depth({"a": [1, {"b": 2}]}), json_depth(3)
    (3, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is not a finite number")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
