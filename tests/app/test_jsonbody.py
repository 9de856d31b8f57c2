"""Memory of a base64 JSON body: parsed and decoded with a peak under 1.5x the decoded
size (the body itself included), measured with tracemalloc on the real code path."""

from __future__ import annotations

import base64
import json
import tracemalloc

import pytest
from media_toolkit import MediaFile

from apipod.app.jsonbody import parse_json_inputs
from apipod.endpoint import build_spec
from apipod.errors import UploadTooLarge
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


def test_a_long_base64_like_text_for_a_str_parameter_counts_against_max_json_mb() -> None:
    # Long base64-like strings are cut out of the body before the max_json_mb check (they
    # may be media); one that lands in a str parameter is held as text, so it counts.
    spec = build_spec(upload, "/upload", methods=["POST"])
    note = "A" * 2_000_000
    body = json.dumps({"file": base64.b64encode(b"\x89PNG").decode(), "note": note}).encode()
    reserved: list[int] = []
    with pytest.raises(UploadTooLarge, match="max_json_mb"):
        parse_json_inputs(body, spec, 1_000_000, reserved.append)
    values = parse_json_inputs(body, spec, 3_000_000, reserved.append)
    assert values["note"] == note
    assert sum(reserved) >= len(note), "the text a str parameter holds is reserved"
    media_only = json.dumps({"file": "A" * 2_000_000}).encode()
    assert "file" in parse_json_inputs(media_only, spec, 1_000_000)  # media: the upload limit
