"""Fixture: a queue-mode service for the hostile-input memory and host tests: a text
endpoint, a media endpoint with a text field, and a result of many large files."""

from __future__ import annotations

from apipod import APIPod, MediaFile

app = APIPod(compute="serverless", provider="localhost", title="queue-hostile")


@app.endpoint("/echo")
def echo(text: str) -> dict:
    return {"length": len(text)}


@app.endpoint("/file")
def file(file: MediaFile, note: str = "") -> dict:
    return {"size": len(file.to_bytes()), "note": len(note)}


@app.endpoint("/many-files")
def many_files(count: int = 30, megabytes: float = 7.5) -> list[MediaFile]:
    size = int(megabytes * 1_000_000)
    return [
        MediaFile(file_name=f"part{i}.bin").from_bytes(bytes([i % 256]) * size)
        for i in range(count)
    ]
