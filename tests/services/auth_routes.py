"""Fixture: every kind of route, for the API-key tests, in either mode.

``AUTH_COMPUTE`` picks the mode (``dedicated`` or ``serverless``). ``AUTH_CONSTRUCTOR_KEY``,
when set, is passed as ``APIPod(api_key=...)``; run as a script, the service starts itself
with ``app.start(api_key=AUTH_START_KEY)``.
"""

from __future__ import annotations

import os

from apipod import APIPod

app = APIPod(
    compute=os.environ.get("AUTH_COMPUTE", "dedicated"),
    provider="localhost",
    title="auth-routes",
    api_key=os.environ.get("AUTH_CONSTRUCTOR_KEY") or None,
)


@app.endpoint("/work")
def work(text: str = "x") -> dict:
    return {"text": text}


@app.get("/info")
def info(verbose: bool = False) -> dict:
    return {"verbose": verbose}


@app.endpoint("/direct", use_queue=False)
def direct() -> dict:
    return {"direct": True}


if __name__ == "__main__":
    app.start(api_key=os.environ["AUTH_START_KEY"])
