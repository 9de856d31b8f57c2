"""Signed, expiring file URLs: with an API key set, a file URL handed out in a JobResult
carries ``?expires=<unix time>&signature=<hex HMAC-SHA256 of "<path>\\n<expires>">`` under
the key, so media-toolkit's ``from_url``, a browser or ``curl`` fetch it without headers."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs

from apipod.app.numbers import bounded_int

FILES_PREFIX = "/files/"


def signature(api_key: str, path: str, expires: int) -> str:
    message = f"{path}\n{expires}".encode()
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def signed_query(api_key: str, path: str, ttl_s: float) -> str:
    """The query string that lets ``path`` be fetched for ``ttl_s`` seconds."""
    expires = int(time.time() + ttl_s)
    return f"expires={expires}&signature={signature(api_key, path, expires)}"


def has_valid_signature(api_key: str, path: str, query_string: bytes) -> bool:
    """Whether a ``/files/...`` request carries an unexpired signature of its path."""
    if not path.startswith(FILES_PREFIX):
        return False
    query = parse_qs(query_string.decode("latin-1"))
    expires = bounded_int(query.get("expires", [""])[0])
    supplied = query.get("signature", [""])[0]
    if expires is None or expires < time.time() or not supplied:
        return False
    return hmac.compare_digest(supplied, signature(api_key, path, expires))
