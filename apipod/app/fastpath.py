"""A direct ASGI path for the hot routes: endpoint calls and ``GET /status/{id}``.

Profiling the queue front end under load showed most of its CPU per job in FastAPI's
per-request layers (middleware chain, routing, dependency solving), not in our handlers or
the store. Our handlers already parse and validate their own inputs, so these requests are
dispatched to them straight from ASGI. Every other request, and every request when the
user added middleware of their own, goes through the full FastAPI stack, so behaviour
(docs, auth, CORS, error shapes) stays the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from apipod.app.auth import has_valid_key

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

Handler = Callable[[Request], Awaitable[Response]]
STATUS_PREFIX = "/status/"


class FastPath:
    """Wraps the FastAPI middleware stack; serves matching requests itself."""

    def __init__(
        self,
        pod: APIPod,
        stack: ASGIApp,
        routes: dict[tuple[str, str], Handler],
        status: Handler | None,
    ) -> None:
        self._pod = pod
        self._stack = stack
        self._routes = routes
        self._status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._match(scope) if scope["type"] == "http" else None
        if handler is None or not has_valid_key(scope, self._pod.config.api_key):
            await self._stack(scope, receive, send)  # includes the 401 of the auth check
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            response = await self._pod.error_response(request, exc)
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> Handler | None:
        method, path = scope["method"], scope["path"]
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler
        if method == "GET" and path.startswith(STATUS_PREFIX) and "/" not in path[8:]:
            return self._status
        return None
