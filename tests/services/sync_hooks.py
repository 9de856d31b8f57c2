"""Fixture: a sync and an async ``on_worker_start`` hook, each slow, each counted."""

from __future__ import annotations

import asyncio
import time

from apipod import APIPod

app = APIPod(title="sync-hooks")

events: list[dict] = []


@app.on_worker_start
def load_sync() -> None:
    time.sleep(0.3)
    events.append({"hook": "sync", "done_at": time.time()})


@app.on_worker_start
async def load_async() -> None:
    await asyncio.sleep(0.3)
    events.append({"hook": "async", "done_at": time.time()})


@app.endpoint("/events")
def get_events() -> dict:
    return {"events": events, "now": time.time()}
