"""Stored files over HTTP: ``GET /files/{job_id}/{name}`` streams a job's stored input
or result with ``Content-Type``, ``Content-Length``, ``ETag``, ``Range`` (206) and
``Content-Disposition``. Same auth as every route, or a signed URL (:mod:`.signing`)."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

from fastapi import FastAPI, Path, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from apipod.app.numbers import INT64_MAX, bounded_int
from apipod.app.openapi import FILES_TAG
from apipod.app.queue import JOB_ID_PATTERN, QueueFrontEnd, check_job_id

CHUNK_BYTES = 1 << 20
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_BINARY = {"type": "string", "format": "binary"}
_SUMMARIES = {
    "GET": "Raw bytes of a stored input or result (Range requests supported)",
    "HEAD": "Headers of a stored input or result (size, type, ETag)",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": _BINARY}}},
    206: {"description": "The requested byte range"},
    304: {"description": "Not modified (If-None-Match)"},
    404: {"description": "No such file (unknown job, expired, or no such name)"},
    416: {"description": "Range not satisfiable"},
}


# --- the route ----------------------------------------------------------------------------------
def install_file_routes(app: FastAPI, queue: QueueFrontEnd) -> None:
    """Register ``GET`` and ``HEAD /files/{job_id}/{name}`` on ``app``."""

    async def download(
        request: Request,
        job_id: str = Path(pattern=JOB_ID_PATTERN),
        name: str = Path(),
        expires: int | None = Query(
            None, ge=0, le=INT64_MAX, description="signed URLs: expiry (unix time)"
        ),
        signature: str | None = Query(None, description="signed URLs: HMAC of the path"),
    ) -> Response:
        check_job_id(job_id)
        try:
            reader = await queue.call(queue.store.open_file, f"files/{job_id}/{name}")
        except (FileNotFoundError, ValueError):
            return JSONResponse({"detail": f"no file {name!r} for job {job_id}"}, status_code=404)
        return file_response(request, reader, job_id, name)

    for method in ("GET", "HEAD"):  # one route each: one operation id each
        app.router.add_api_route(
            "/files/{job_id}/{name}",
            download,
            methods=[method],
            operation_id=f"{method.lower()}_file",
            tags=[FILES_TAG],
            summary=_SUMMARIES[method],
            response_class=Response,
            responses=_RESPONSES,
        )


def file_response(request: Request, reader: IO[bytes], job_id: str, name: str) -> Response:
    """A streamed answer of ``reader`` (closed when done) honouring Range and ETag."""
    size = reader.seek(0, 2)
    etag = '"' + hashlib.sha256(f"{job_id}/{name}/{size}".encode()).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _disposition(name),
        "Cache-Control": "private, max-age=3600",
    }
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if etag in _etags(request.headers.get("if-none-match", "")):
        reader.close()
        return Response(status_code=304, headers=headers)
    wanted = _wanted_range(request, etag, size)
    if wanted is None:
        reader.close()
        headers["Content-Range"] = f"bytes */{size}"
        body = {"detail": f"range not satisfiable (the file has {size} bytes)"}
        return JSONResponse(body, status_code=416, headers=headers)
    start, end = wanted
    headers["Content-Length"] = str(end - start)
    status = 200
    if (start, end) != (0, size):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        reader.close()
        return Response(status_code=status, headers=headers, media_type=media_type)
    body = _chunks(reader, start, end - start)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media_type)


def _wanted_range(request: Request, etag: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` to send (end exclusive): the whole file unless one satisfiable
    byte range was asked for (and ``If-Range``, when sent, still matches); None: 416."""
    header = request.headers.get("range", "").replace(" ", "")
    if_range = request.headers.get("if-range")
    match = _RANGE.match(header)
    if not match or (if_range is not None and if_range != etag):
        return 0, size  # no range, several ranges or a stale If-Range: the whole file
    first, last = (_offset(text) for text in match.groups())
    if first is None and last is None:
        return 0, size
    if first is None:  # the last N bytes
        count = min(last or 0, size)
        return (size - count, size) if count else None
    start = first
    end = min(last + 1, size) if last is not None else size
    if start >= size or end <= start:
        return None
    return start, end


def _offset(digits: str) -> int | None:
    """A byte offset of a Range header (ASCII digits); past any file's size if huge."""
    if not digits:
        return None
    value = bounded_int(digits)
    return INT64_MAX if value is None else value


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def _chunks(reader: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    # A plain generator: Starlette runs each step in a worker thread (blocking reads).
    try:
        reader.seek(start)
        while length > 0:
            chunk = reader.read(min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        reader.close()
