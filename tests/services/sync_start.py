"""Fixture: a service that starts itself with ``app.start(port=...)`` when run as a script."""

from __future__ import annotations

import sys

from apipod import APIPod

app = APIPod(title="sync-start")


@app.endpoint("/hello")
def hello(name: str = "world") -> dict:
    return {"hello": name}


if __name__ == "__main__":
    # An optional second argument is an API key given to start(), as scripts do.
    app.start(port=int(sys.argv[1]), api_key=sys.argv[2] if len(sys.argv) > 2 else None)
