"""A service that loads its "model" at import time (the mistake the start-up warning
names): 200 MB of touched memory and a second of work before the module is ready."""

from __future__ import annotations

import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="heavy-import")

time.sleep(1.0)
MODEL = b"\x01" * (200 * 1024 * 1024)  # resident: every page written


@app.endpoint("/size")
def size() -> dict:
    return {"bytes": len(MODEL)}
