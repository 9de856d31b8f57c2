"""The API key check (``api_key`` / ``APIPOD_API_KEY``): one mechanism for every route but
``/health``, in both modes, whichever way the key was given.

The key is read from the app's current config at each request, so a key set late
(``app.start(api_key=...)``, a CLI flag) is enforced exactly like one given to the
constructor. The scheme is matched case-insensitively (RFC 7235); the key is compared in
constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from apipod.app.signing import has_valid_signature

OPEN_PATHS = frozenset({"/health", "/dashboard"})  # the dashboard page holds no data
UNAUTHORIZED = "missing or wrong API key: send 'Authorization: Bearer <key>'"


def has_valid_key(scope: Scope, api_key: str | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <api_key>`` (always True
    when no key is configured)."""
    if not api_key:
        return True
    supplied = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, token = supplied.partition(b" ")
    expected = api_key.encode()
    # Both comparisons always run, so timing says nothing about which part was wrong.
    scheme_ok = hmac.compare_digest(scheme.lower(), b"bearer")
    token_ok = hmac.compare_digest(token.strip(), expected)
    return scheme_ok and token_ok


def unauthorized_response() -> JSONResponse:
    return JSONResponse(
        {"detail": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


class ApiKeyMiddleware:
    """Pure ASGI middleware: answers 401 unless the current key (``key_of()``) is sent."""

    def __init__(
        self,
        app: ASGIApp,
        key_of: Callable[[], str | None],
        unauthorized: Callable[[Scope], Response] | None = None,
    ) -> None:
        self.app = app
        self._key_of = key_of
        self._unauthorized = unauthorized or (lambda scope: unauthorized_response())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or has_valid_key(scope, self._key_of())
            or self._signed(scope)
        ):
            await self.app(scope, receive, send)
            return
        await self._unauthorized(scope)(scope, receive, send)

    def _signed(self, scope: Scope) -> bool:
        # A file URL from a JobResult carries its own expiring signature (signing.py).
        key = self._key_of()
        query = scope.get("query_string", b"")
        return bool(key) and has_valid_signature(key, scope["path"], query)
