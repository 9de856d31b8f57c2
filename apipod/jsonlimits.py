"""How much a JSON text would build, measured before it is parsed.

Python's parser builds every value of a document at once: ten megabytes of ``[],``
become three million lists (hundreds of megabytes) before any check of the result can
run. :func:`json_shape` counts a text's values and its nesting from its structural
characters alone (strings cut out first, in C), so a document that would build too
much is refused while it is still bytes. Used for request bodies
(:mod:`apipod.app.jsonbody`) and for JSON text in form fields (:mod:`apipod.endpoint`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from apipod.errors import InputError

MAX_DEPTH = 64
#: Values (numbers, strings, lists, objects, ...) one JSON text may hold.
MAX_VALUES = 1_000_000
#: What one parsed value costs in memory, roughly (object, pointer, dict slot), for
#: the in-flight budget.
BYTES_PER_VALUE = 80

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = tuple(1 if c in b"[{" else -1 for c in range(256))


@dataclass(frozen=True)
class JsonShape:
    """What parsing a JSON text builds: ``values`` (an upper bound), ``depth``."""

    values: int
    depth: int

    @property
    def built_bytes(self) -> int:
        """A rough bound of the memory the parsed values take (strings aside)."""
        return self.values * BYTES_PER_VALUE


def json_shape(text: bytes | bytearray | str, field: str | None = None) -> JsonShape:
    """The shape of ``text``, or InputError (422) if it holds more than ``MAX_VALUES``
    values or nests deeper than ``MAX_DEPTH``. Invalid JSON is left to the parser."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    skeleton = _STRING.sub(b'""', data) if b'"' in data else bytes(data)
    containers = skeleton.count(b"[") + skeleton.count(b"{")
    values = skeleton.count(b",") + containers + 1
    if values > MAX_VALUES:
        raise InputError(
            f"the JSON text holds more than {MAX_VALUES:,} values; send large data as a file",
            field,
        )
    brackets = skeleton.translate(None, _NOT_BRACKETS)  # at most 2 * MAX_VALUES
    deepest = max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
    if deepest > MAX_DEPTH:
        raise InputError(f"JSON nested deeper than {MAX_DEPTH} levels", field)
    return JsonShape(values, deepest)


def loads_bounded(text: str, field: str | None = None) -> Any:
    """``json.loads`` of a text whose shape was checked first (:func:`json_shape`);
    ``json.JSONDecodeError`` as ``json.loads`` raises it."""
    json_shape(text, field)
    return json.loads(text)
