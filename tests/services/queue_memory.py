"""Fixture: each worker holds ~400 MB (its "model"); the API process must not."""

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")

model = None


@app.on_worker_start
def load() -> None:
    global model
    model = bytearray(400 * 1024 * 1024)
    model[::4096] = b"x" * len(model[::4096])  # touch every page so RSS counts it


@app.endpoint("/size")
def size() -> dict:
    return {"model_bytes": len(model) if model is not None else 0}
