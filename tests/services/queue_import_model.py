"""Fixture: a service that loads its "model" at import time (256 MB of written memory),
the mistake ``apipod start`` warns about once."""

from __future__ import annotations

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="queue-import-model")

MODEL = b"\x01" * (256 * 1024 * 1024)


@app.endpoint("/size")
def size() -> dict:
    return {"model_bytes": len(MODEL)}
