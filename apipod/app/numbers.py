"""Whole numbers read from a request's text (query parameters, headers, signed URLs).

One parser for "a non-negative integer up to a bound", so junk is a clean refusal
everywhere: ``str.isdigit()`` alone accepts ``'²'`` and other digits ``int()`` refuses, and
``int()`` raises on over 4,300 digits; either was a 500.
"""

from __future__ import annotations

from apipod.endpoint import InputValidationError

#: The largest value a signed 64-bit column holds (job sequence numbers, chunk numbers).
INT64_MAX = 2**63 - 1


def bounded_int(text: str | None, maximum: int = INT64_MAX) -> int | None:
    """``text`` as an integer from 0 to ``maximum`` when it is plain ASCII digits (no
    sign, no spaces); None for anything else, a number past ``maximum`` included."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


def query_int(
    text: str,
    name: str,
    message: str,
    *,
    minimum: int = 0,
    maximum: int = INT64_MAX,
    location: str = "query",
) -> int:
    """``text`` (the value of parameter ``name``) as an integer from ``minimum`` to
    ``maximum``; :class:`InputValidationError` (a 422 naming ``message``) otherwise."""
    value = bounded_int(text, maximum)
    if value is None or value < minimum:
        error = {"type": "int_parsing", "loc": [location, name], "msg": message}
        raise InputValidationError([{**error, "input": text[:100]}])
    return value
