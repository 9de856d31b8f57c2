"""The API child process: uvicorn serving the app's HTTP front end (no models here)."""

from __future__ import annotations

import logging

import uvicorn

from apipod.app.server import uvicorn_options
from apipod.child import enter_child
from apipod.config import Config
from apipod.loader import load_app

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5


def api_main(target: str, config: Config) -> None:
    """Entry point of the spawned API process."""
    enter_child("api", config.log_level)
    app = load_app(target)
    app.apply_config(config)
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **uvicorn_options(config),
    )
    logger.info("API serving on http://%s:%d", config.host, config.port)
    uvicorn.Server(server_config).run()
