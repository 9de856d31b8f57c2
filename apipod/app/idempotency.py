"""``Idempotency-Key`` on submits: a client that retries a submit (a timeout, a dropped
connection) with the same key gets the job of its first attempt instead of a second job.

The key is scoped to the endpoint and bound to the job in the store before the job is
stored, so it holds across restarts and across every API box sharing the store, and it
lasts as long as the job (the TTL deletes both). The same key with a different request
(other inputs, files or webhook) is a 409, as is a retry that arrives while the first
submit is still storing its job.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from apipod.endpoint import InputValidationError
from apipod.media.results import encode_result
from apipod.store.base import JobStore
from apipod.store.records import Job

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: A binding without its job for longer than this was left by a submit that died (a
#: crash between the two writes); a younger one belongs to a submit still under way.
IN_FLIGHT_GRACE_S = 120.0
CHUNK_BYTES = 1 << 20


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (1-255 visible ASCII characters), or None."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        error = {
            "type": "value_error",
            "loc": ["header", "Idempotency-Key"],
            "msg": f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} visible ASCII characters",
            "input": key[:100],
        }
        raise InputValidationError([error])
    return key


def request_hash(values: dict[str, Any], payloads: dict[str, Any], extra: Any = None) -> str:
    """A digest of what a submit asks for: its validated values, the bytes, names and
    types of its files, and ``extra`` (e.g. its webhook), whatever the encoding."""
    digest = hashlib.sha256()
    encoded = {name: encode_result(value) for name, value in values.items()}
    digest.update(json.dumps([encoded, extra], sort_keys=True, default=str).encode())
    for name in sorted(payloads):
        items = payloads[name] if isinstance(payloads[name], list) else [payloads[name]]
        for payload in items:
            digest.update(f"\0{name}\0".encode())
            if payload is not None:
                digest.update(f"{payload.file_name}\0{payload.content_type}\0".encode())
                digest.update(_file_digest(payload.data))
    return digest.hexdigest()


def _file_digest(data: bytes | IO[bytes]) -> bytes:
    """SHA-256 of a file input: bytes as they are, a spooled file (an upload, a long
    base64 string, a fetched URL) read chunk by chunk from its start, its position kept."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return hashlib.sha256(data).digest()
    position = data.tell()
    data.seek(0)
    digest = hashlib.sha256()
    try:
        while chunk := data.read(CHUNK_BYTES):
            digest.update(chunk)
        return digest.digest()
    finally:
        data.seek(position)


def submit_idempotent(
    store: JobStore,
    endpoint: str,
    key: str,
    values: dict[str, Any],
    payloads: dict[str, Any],
    submit: Callable[..., Job],
    extra: Any = None,
) -> tuple[Job, bool]:
    """:func:`submit_once` for a request's values and files (and ``extra``, e.g. its
    webhook); ``submit(job_id=...)`` stores the job. Blocking (hashing, store calls)."""
    digest = request_hash(values, payloads, extra)
    return submit_once(store, endpoint, key, digest, lambda job_id: submit(job_id=job_id))


def submit_once(
    store: JobStore, endpoint: str, key: str, digest: str, submit: Callable[[str], Job]
) -> tuple[Job, bool]:
    """``submit(job_id)`` unless ``key`` already stands for a job of ``endpoint``; the job
    and whether it is the earlier one (a replay). Blocking: runs on the store's pool."""
    job_id = uuid.uuid4().hex
    for _ in range(2):
        record = store.reserve_idempotency_key(endpoint, key, digest, job_id)
        if record.job_id == job_id:
            try:
                return submit(job_id), False
            except BaseException:
                store.release_idempotency_key(endpoint, key, job_id)
                raise
        if record.request_hash != digest:
            raise _conflict("was used for a different request to this endpoint")
        job = store.get(record.job_id)
        if job is not None:
            return job, True
        age = (datetime.now(timezone.utc) - record.created_at).total_seconds()
        if age < IN_FLIGHT_GRACE_S:
            raise _conflict("belongs to a submit that is still being stored; retry shortly")
        store.release_idempotency_key(endpoint, key, record.job_id)
    raise _conflict("is contended; retry shortly")


def _conflict(reason: str) -> HTTPException:
    return HTTPException(409, f"this Idempotency-Key {reason}")
