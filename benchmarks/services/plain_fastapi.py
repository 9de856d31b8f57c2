"""The baseline: a plain FastAPI no-op endpoint on uvicorn, nothing else."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/noop")
async def noop() -> dict:
    return {}
