"""Bench service for media_bench.py: a job that reads every byte of its upload and
answers a result of the same size, computed in memory as a model's output would be."""

from __future__ import annotations

import hashlib

from apipod import APIPod, MediaFile

app = APIPod(compute="serverless", provider="localhost", title="media-bench")


@app.endpoint("/roundtrip")
def roundtrip(file: MediaFile) -> MediaFile:
    reader = file.fileobj
    reader.seek(0)
    sha = hashlib.sha256()
    output = bytearray()
    for block in iter(lambda: reader.read(1 << 20), b""):
        sha.update(block)
        output += block
    return bytes(output)
