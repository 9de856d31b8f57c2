"""Parsing a JSON request body safely, with its long base64 strings left undecoded.

Hostile JSON must get a 422, never a 500, and never build more than its bytes allow:
before parsing, :func:`apipod.jsonlimits.json_shape` counts the values (at most
``MAX_VALUES``: ten megabytes of ``[],`` would be three million lists) and the nesting
(deeper than ``MAX_DEPTH``, Python's parser and every recursive walk after it would
overflow the stack), and the memory the values will take is reserved from the in-flight
budget. Also refused: integers longer than Python converts (4,300 digits), text that is
not UTF-8, and lone surrogates (valid JSON escapes that no UTF-8 encoder, database or
response writer accepts). Beside its base64 media, a body holds at most ``max_json_mb``.

Memory: a base64 string in a JSON body used to exist three times at once (body bytes,
parsed ``str``, decoded bytes). Strings of base64 or ``data:`` URL characters longer than
``LONG_STRING`` are instead cut out of the body before parsing and handed on as
:class:`~apipod.media.convert.EncodedText` views of the body, which a media parameter
decodes in chunks straight to a spooled file. Other parameters get them back as ``str``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from apipod.endpoint import EndpointSpec, InputValidationError
from apipod.errors import InputError, UploadTooLarge
from apipod.jsonlimits import MAX_DEPTH, json_shape
from apipod.media.convert import EncodedText

LONG_STRING = 65536
_LONG = re.compile(
    rb'"((?:data:[A-Za-z0-9.+/-]*(?:;[A-Za-z0-9.+-]+=[A-Za-z0-9.+/-]*)*;base64,)?'
    rb"[A-Za-z0-9+/=_-]{%d,})\"" % LONG_STRING
)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json_inputs(
    body: bytes | bytearray,
    spec: EndpointSpec,
    limit_bytes: int | None = None,
    reserve: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The body's values for ``spec``'s parameters; InputValidationError (422) for any
    body that is not a JSON object of sane depth, size, numbers and text. Beside the long
    base64 strings (media, decoded in chunks later), the body may hold ``limit_bytes``
    (else UploadTooLarge, 413). Before parsing, ``reserve`` is given the bytes the parsed
    values will take (the in-flight budget)."""
    small, texts = _cut_long_strings(body)
    if limit_bytes is not None and len(small) > limit_bytes:
        raise UploadTooLarge(limit_bytes, "the JSON body beside base64 media (max_json_mb)")
    try:
        shape = json_shape(small)
    except InputError as exc:
        raise _invalid(exc.message) from None
    if reserve is not None:
        reserve(len(small) + shape.built_bytes)
    try:
        document = json.loads(small.decode("utf-8"))
    except UnicodeDecodeError:
        raise _invalid("the body is not UTF-8 text") from None
    except RecursionError:
        raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and integers over the digit limit
        raise _invalid(f"JSON decode error: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("the JSON body must be an object of inputs")
    _check_document(document, check_text=_SURROGATE_ESCAPE.search(small) is not None)
    values: dict[str, Any] = {}
    held = len(small)
    for key, value in document.items():
        param = spec.param(_restore(key, texts, keep_encoded=False))
        if param is None:
            continue
        files_only = _takes_only_files(param)
        if not files_only:  # the cut-out text becomes a str in memory: it counts as JSON
            text_bytes = _cut_text_bytes(value, texts)
            held += text_bytes
            if limit_bytes is not None and held > limit_bytes:
                raise UploadTooLarge(limit_bytes, "the JSON body beside base64 media (max_json_mb)")
            if reserve is not None and text_bytes:
                reserve(text_bytes)
        values[param.name] = _restore(value, texts, keep_encoded=files_only)
    return values


def _cut_text_bytes(value: Any, texts: dict[str, EncodedText]) -> int:
    """The length of the cut-out strings that ``value`` refers to."""
    if not texts:
        return 0
    if isinstance(value, str):
        text = texts.get(value)
        return 0 if text is None else text.end - text.start
    if isinstance(value, list):
        return sum(_cut_text_bytes(v, texts) for v in value)
    if isinstance(value, dict):
        return sum(_cut_text_bytes(k, texts) + _cut_text_bytes(v, texts) for k, v in value.items())
    return 0


def _cut_long_strings(body: bytes | bytearray) -> tuple[bytes | bytearray, dict[str, EncodedText]]:
    """The body with each long base64-like string replaced by a short marker string
    (unguessable: it holds a random nonce), and the cut-out strings by marker."""
    texts: dict[str, EncodedText] = {}
    if len(body) < LONG_STRING:
        return body, texts
    view = memoryview(body)
    nonce = secrets.token_hex(8)
    pieces: list[bytes | memoryview] = []
    last = 0
    for match in _LONG.finditer(body):
        if _escaped(body, match.start()):
            continue  # an escaped quote inside another string, not a string's start
        marker = f"\x00apipod-{nonce}-{len(texts)}"
        texts[marker] = EncodedText(view, match.start(1), match.end(1))
        pieces += [view[last : match.start()], json.dumps(marker).encode()]
        last = match.end()
    if not texts:
        return body, texts
    pieces.append(view[last:])
    return b"".join(pieces), texts


def _escaped(body: bytes | bytearray, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and body[index - backslashes - 1] == 0x5C:
        backslashes += 1
    return backslashes % 2 == 1


def _restore(value: Any, texts: dict[str, EncodedText], *, keep_encoded: bool) -> Any:
    if not texts:
        return value
    if isinstance(value, str):
        text = texts.get(value)
        if text is None:
            return value
        return text if keep_encoded else text.text()
    if isinstance(value, list):
        return [_restore(v, texts, keep_encoded=keep_encoded) for v in value]
    if isinstance(value, dict):
        return {
            _restore(k, texts, keep_encoded=False): _restore(v, texts, keep_encoded=keep_encoded)
            for k, v in value.items()
        }
    return value


def _check_document(document: Any, *, check_text: bool) -> None:
    """Depth at most MAX_DEPTH; with ``check_text``, no lone surrogate in any string."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            if check_text:
                _check_strings(value.keys())
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif check_text and isinstance(value, str):
            _check_strings((value,))


def _check_strings(strings: Any) -> None:
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid("a string holds a lone surrogate (\\ud800-\\udfff)") from None


def _invalid(message: str) -> InputValidationError:
    error = {"type": "json_invalid", "loc": ["body"], "msg": message, "input": None}
    return InputValidationError([error])


def _takes_only_files(param: Any) -> bool:
    # A union with plain types (``ImageFile | str``) gets text: only the parameter's own
    # validation can tell which member the client meant.
    return param.media_cls is not None and param.plain is None
