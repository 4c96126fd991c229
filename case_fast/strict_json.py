"""Strict JSON: what the package writes, its own strict readers read back.

``json.dumps`` writes NaN and Infinity as bare words that are not JSON (``data.annotations.load_json``
and every other strict reader refuse them). :func:`dumps` refuses them instead, in one line naming
the key that holds one, and :func:`dumps_line` does the same for one line of a JSON-lines file.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional


class NonFiniteError(ValueError):
    """A value to write as JSON holds NaN or an infinity (the message names its key)."""


def find_non_finite(obj: Any, path: str = "") -> Optional[tuple]:
    """(key path such as ``best.map[3]``, the value) of the first float that is NaN or infinite in
    nested dicts / lists / tuples, else None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "<top level>", obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = find_non_finite(v, f"{path}.{k}" if path else str(k))
            if hit is not None:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = find_non_finite(v, f"{path}[{i}]")
            if hit is not None:
                return hit
    return None


def dumps(obj: Any, indent: Optional[int] = None, where: str = "") -> str:
    """``json.dumps`` with NaN / Infinity refused: :class:`NonFiniteError` naming ``where`` (the file)
    and the key."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        hit = find_non_finite(obj)
        if hit is None:
            raise
        place = f"{where}: " if where else ""
        raise NonFiniteError(f"{place}key {hit[0]} is {hit[1]!r}, which JSON cannot hold; nothing was "
                             "written") from None


def dumps_line(obj: Any, where: str = "") -> str:
    """One line of a JSON-lines file (no indentation), strict like :func:`dumps`."""
    return dumps(obj, None, where) + "\n"
