"""Fixture: jobs for the fault tests (store outages, a GIL-holding job, unstorable errors)."""

from __future__ import annotations

import ctypes
import os
import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="queue-faults")


@app.endpoint("/work")
def work(n: int = 0, delay: float = 0.05) -> dict:
    time.sleep(delay)
    return {"n": n, "pid": os.getpid()}


@app.endpoint("/hold-gil")
def hold_gil(seconds: int = 6) -> dict:
    """libc's sleep through PyDLL keeps the GIL: no other thread of the worker runs."""
    ctypes.PyDLL("libc.so.6").sleep(seconds)
    return {"held": seconds, "pid": os.getpid()}


@app.endpoint("/nul-error")
def nul_error() -> dict:
    raise ValueError("a NUL \x00 and a lone \udc80 in the error")
