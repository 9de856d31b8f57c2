"""Fixture: a job that kills its own worker process (os._exit), or segfaults."""

import ctypes
import os
from pathlib import Path

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.endpoint("/exit")
def exit_worker(code: int = 7) -> dict:
    os._exit(code)


@app.endpoint("/segfault")
def segfault() -> dict:
    ctypes.string_at(0)
    return {}


@app.endpoint("/exit-once")
def exit_once(marker: str) -> dict:
    """Crashes on the first attempt only (the marker file remembers), then succeeds."""
    path = Path(os.environ["APIPOD_DATA_DIR"]) / f"{marker}.crashed"
    if not path.exists():
        path.write_text("1")
        os._exit(9)
    return {"survived": True}
