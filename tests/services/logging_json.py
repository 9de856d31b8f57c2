"""Fixture: an endpoint that logs with its own logger (either mode, set by the test)."""

from __future__ import annotations

import logging

from apipod import APIPod

app = APIPod(title="logging")
log = logging.getLogger("service.greet")


@app.endpoint("/greet")
def greet(name: str) -> dict:
    log.info("greeting %s", name)
    if name == "fail":
        raise ValueError("no greeting for fail")
    return {"hello": name}
