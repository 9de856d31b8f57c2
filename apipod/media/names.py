"""The one file-name sanitiser: client file names (uploads, FileModel ``file_name``,
downloads) and stored file names all go through :func:`safe_name`."""

from __future__ import annotations

import re

_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_MAX_NAME_BYTES = 200
FALLBACK_NAME = "file"


def safe_name(name: str | None) -> str:
    """The last path component of ``name`` (``/`` and ``\\`` both separate) without
    control characters or lone surrogates, never empty, ``.`` or ``..`` (then ``"file"``),
    at most 200 bytes of UTF-8 (the extension is kept when shortening)."""
    text = str(name or "").encode("utf-8", "ignore").decode("utf-8")  # drops surrogates
    base = _UNSAFE_CHARS.sub("", text.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if base in ("", ".", ".."):
        return FALLBACK_NAME
    if len(base.encode()) <= _MAX_NAME_BYTES:
        return base
    stem, dot, ext = base.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = base, ""
    suffix = f".{ext}" if ext else ""
    room = _MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:room].decode(errors="ignore") + suffix
