"""The service that benchmarks/abuse_bench.py attacks."""

from __future__ import annotations

import time

from apipod import APIPod, ImageFile, MediaFile

app = APIPod(compute="serverless", provider="localhost", title="abuse-bench")


@app.endpoint("/hold")
def hold(seconds: float = 60.0, pad: str = "") -> dict:
    time.sleep(seconds)
    return {"held": seconds}


@app.endpoint("/echo")
def echo(text: str) -> dict:
    return {"length": len(text)}


@app.endpoint("/images", max_upload_file_size_mb=1)
def images(pictures: list[ImageFile]) -> dict:
    return {"count": len(pictures)}


@app.endpoint("/file")
def file(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes())}
