"""The plain reference for media_bench.py: a FastAPI app on uvicorn that streams an
upload to disk, reads every byte of it into a result of the same size (in memory, as a
model's output would be), writes that to disk and streams it back (FileResponse)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

app = FastAPI()
ROOT = Path(os.environ.get("PLAIN_MEDIA_DIR", tempfile.mkdtemp()))


def process(source: Path, target: Path) -> str:
    sha = hashlib.sha256()
    output = bytearray()
    with open(source, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            sha.update(block)
            output += block
    target.write_bytes(bytes(output))
    return sha.hexdigest()


@app.post("/roundtrip")
async def roundtrip(request: Request) -> dict:
    job = uuid.uuid4().hex
    upload = ROOT / f"{job}.in"
    with open(upload, "wb") as sink:
        async for chunk in request.stream():
            sink.write(chunk)
    digest = await run_in_threadpool(process, upload, ROOT / f"{job}.out")
    return {"job": job, "sha256": digest}


@app.get("/files/{job}")
async def download(job: str) -> FileResponse:
    return FileResponse(ROOT / f"{job}.out")
