"""Parsing multipart forms with the text fields held in memory bounded.

Starlette spools a multipart form's files to disk but keeps every other field in memory,
each up to ``max_part_size``: with that set to the upload limit, one 300 MB text field
took 300 MB of the API's memory. :class:`BoundedMultiPartParser` caps the non-file fields
of one form together at ``fields_limit`` bytes (``max_json_mb``), refused with a 413 that
says to send more as a file part, and takes their bytes from the in-flight budget.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from apipod.errors import UploadTooLarge

MAX_PARTS = 10_000


class BoundedMultiPartParser(MultiPartParser):
    """Starlette's parser, with all non-file fields together at most ``fields_limit``
    bytes (each byte taken from ``reserve`` as it arrives)."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        *,
        fields_limit: int,
        reserve: Callable[[int], None],
    ) -> None:
        super().__init__(
            headers, stream, max_files=MAX_PARTS, max_fields=MAX_PARTS, max_part_size=fields_limit
        )
        self._fields_limit = fields_limit
        self._fields_bytes = 0
        self._reserve = reserve

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:
            self._fields_bytes += end - start
            if self._fields_bytes > self._fields_limit:
                field = self._current_part.field_name
                raise UploadTooLarge(
                    self._fields_limit,
                    f"the form's text (non-file) data, at field '{field[:100]}',",
                    hint="send large values as a file part (a part with a filename)",
                )
            self._reserve(end - start)
        super().on_part_data(data, start, end)


async def parse_multipart(
    headers: Headers,
    stream: AsyncGenerator[bytes, None],
    fields_limit: int,
    reserve: Callable[[int], None],
) -> FormData:
    """The form of a multipart body (files spooled); a malformed body is a 400."""
    parser = BoundedMultiPartParser(headers, stream, fields_limit=fields_limit, reserve=reserve)
    try:
        async with aclosing(stream):
            return await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(status_code=400, detail=exc.message) from None
