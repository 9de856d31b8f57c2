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
def file(file: MediaFile, note: str = "") -> dict:
    return {"size": len(file.to_bytes()), "note": len(note)}


@app.endpoint("/many-files")
def many_files(count: int = 30, megabytes: float = 7.5) -> list[MediaFile]:
    size = int(megabytes * 1_000_000)
    return [MediaFile(file_name=f"part{i}.bin").from_bytes(bytes([i]) * size) for i in range(count)]
