"""Memory of a base64 JSON body: parsed and decoded with a peak under 1.5x the decoded
size (the body itself included), measured with tracemalloc on the real code path."""

from __future__ import annotations

import base64
import json
import tracemalloc

from media_toolkit import MediaFile

from apipod.app.jsonbody import parse_json_inputs
from apipod.endpoint import build_spec
from apipod.media.convert import MediaBudget, read_media
from apipod.media.urlpolicy import UrlPolicy


def upload(file: MediaFile, note: str = "") -> dict:
    return {}


def test_base64_body_peaks_under_one_and_a_half_times_the_decoded_size() -> None:
    spec = build_spec(upload, "/upload", methods=["POST"])
    decoded = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40_000  # about 10 MB
    body = bytearray(json.dumps({"file": base64.b64encode(decoded).decode()}).encode())
    tracemalloc.start()
    try:
        values = parse_json_inputs(body, spec)
        payload = read_media(values["file"], MediaFile, "file", UrlPolicy(), MediaBudget(10**9))
        _, peak = tracemalloc.get_traced_memory()
        peak += len(body)  # the body as the server received it
    finally:
        tracemalloc.stop()
    assert payload.read_all() == decoded
    assert peak < 1.5 * len(decoded), f"peak {peak / len(decoded):.2f}x the decoded size"
