"""Fixture: decorator variants, progress injection and every kind of plain result."""

from __future__ import annotations

import asyncio
import datetime
import enum

from pydantic import BaseModel

from apipod import APIPod, JobProgress

app = APIPod(title="sync-routes", description="routes fixture")


class Point(BaseModel):
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Paint(BaseModel):
    color: Color
    at: datetime.datetime


@app.post("/post-alias")
def post_alias(a: int, b: int = 2) -> dict:
    return {"sum": a + b}


@app.get("/get-alias")
async def get_alias(n: list[int], label: str | None = None) -> dict:
    return {"n": n, "label": label}


@app.endpoint("both", methods=["GET", "POST"])
def both(x: int = 0) -> dict:
    return {"x": x}


@app.endpoint(
    "/options",
    queue_size=5,
    use_queue=True,
    summary="Options summary",
    tags=["alpha", "beta"],
    max_upload_file_size_mb=2,
)
def options(x: int = 1) -> dict:
    return {"x": x}


@app.endpoint("/points")
def points(points: list[Point], origin: Point | None = None) -> dict:
    base = origin or Point(x=0, y=0)
    return {"sum_x": base.x + sum(p.x for p in points), "n": len(points)}


@app.endpoint("/progress")
def progress(job_progress: JobProgress, steps: int = 4) -> dict:
    seen = []
    for i in range(steps):
        job_progress.set_status((i + 1) / steps, f"step {i + 1}/{steps}")
        seen.append(job_progress.progress)
    job_progress.set_status(5.0)
    return {"seen": seen, "final": job_progress.progress, "message": job_progress.message}


@app.endpoint("/async-progress")
async def async_progress(job_progress: JobProgress, label: str = "async") -> dict:
    await asyncio.sleep(0)
    job_progress.set_status(0.75, label)
    return {"progress": job_progress.progress, "message": job_progress.message}


RESULTS = {
    "int": lambda: 42,
    "float": lambda: 1.5,
    "str": lambda: "text",
    "bool": lambda: True,
    "none": lambda: None,
    "list": lambda: [1, "a", None],
    "tuple": lambda: (1, (2, 3)),
    "dict": lambda: {"a": {"b": [1, (2,)]}, 3: "int key"},
    "model": lambda: Point(x=1, y=2),
    "models": lambda: [Point(x=1, y=2), {"p": Point(x=3, y=4)}],
    "paint": lambda: Paint(color=Color.BLUE, at=datetime.datetime(2024, 5, 6, 7, 8, 9)),
    "object": lambda: object(),
}


@app.endpoint("/result")
def result(kind: str):
    return RESULTS[kind]()


@app.endpoint("/async-fail")
async def async_fail() -> dict:
    raise KeyError("async secret detail")
