"""``/docs`` (Swagger UI) and ``/redoc`` served without a CDN.

The assets come from the installed ``fastapi-offline`` package (a maintained package that
ships Swagger UI and ReDoc bundles), so the pages work on a box with no internet.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def install_docs(app: FastAPI, docs_url: str | None, redoc_url: str | None) -> None:
    """Register the docs pages (where their URL is not None) and their assets."""
    if docs_url is None and redoc_url is None:
        return

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    if docs_url is not None:

        @app.router.get(docs_url, include_in_schema=False)
        async def swagger_ui(request: Request) -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - Swagger UI",
                swagger_js_url=asset(request, "swagger-ui-bundle.js"),
                swagger_css_url=asset(request, "swagger-ui.css"),
                swagger_favicon_url=asset(request, "favicon.png"),
            )

    if redoc_url is not None:

        @app.router.get(redoc_url, include_in_schema=False)
        async def redoc(request: Request) -> HTMLResponse:
            return get_redoc_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - ReDoc",
                redoc_js_url=asset(request, "redoc.standalone.js"),
                redoc_favicon_url=asset(request, "favicon.png"),
                with_google_fonts=False,
            )

    @app.router.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in _ASSETS:
            return JSONResponse({"detail": f"no docs asset {name!r}"}, status_code=404)
        return FileResponse(ASSETS_DIR / name, media_type=_ASSETS[name])
