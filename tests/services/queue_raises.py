"""Fixture: a queue-mode job that raises."""

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.endpoint("/boom")
def boom(message: str = "kaboom") -> dict:
    raise ValueError(message)
