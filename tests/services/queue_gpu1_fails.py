"""Fixture: on_worker_start fails on GPU 1 only (a broken card), works elsewhere."""

import os

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.on_worker_start
def load() -> None:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "1":
        raise RuntimeError("CUDA error: uncorrectable ECC error on GPU 1")


@app.endpoint("/work")
def work() -> dict:
    return {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
