"""Streaming JSON output: a 64 TiB machine has half a million sections, so lists are written
element by element (one compact line each) instead of building one giant string."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


_ITEM = json.JSONEncoder(separators=(", ", ": "))


def dump(obj: Any, out: TextIO) -> None:
    """Write ``obj`` as JSON; generators inside it are consumed lazily."""
    for chunk in _encode(obj, 0):
        out.write(chunk)
    out.write("\n")


def _encode(obj: Any, depth: int) -> Iterator[str]:
    pad = "  " * (depth + 1)
    if isinstance(obj, dict):
        if not obj:
            yield "{}"
            return
        yield "{\n"
        first = True
        for k, v in obj.items():
            if not first:
                yield ",\n"
            first = False
            yield f"{pad}{json.dumps(str(k))}: "
            yield from _encode(v, depth + 1)
        yield "\n" + "  " * depth + "}"
    elif isinstance(obj, (list, tuple)) or (isinstance(obj, Iterable) and not isinstance(obj, (str, bytes))):
        first = True
        for v in obj:
            yield ("[\n" if first else ",\n") + pad + _ITEM.encode(v)
            first = False
        yield "[]" if first else "\n" + "  " * depth + "]"
    else:
        yield json.dumps(obj)
