"""Fixture: functions that answer a client error with ``apipod.HTTPError``, or fail."""

from __future__ import annotations

import apipod
from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="queue-client-errors")


@app.endpoint("/refuse")
def refuse(voice: str = "none") -> dict:
    raise apipod.HTTPError(404, f"no such voice: {voice}")


@app.endpoint("/refuse-now", use_queue=False)
def refuse_now(voice: str = "none") -> dict:
    raise apipod.HTTPError(409, f"voice {voice} is busy")


@app.endpoint("/crash-now", use_queue=False)
def crash_now() -> dict:
    raise RuntimeError("disk /srv/models/secret.bin unreadable")
