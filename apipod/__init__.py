"""APIPod: put a Python model behind an HTTP API with a restart-safe job queue.

The public names are imported lazily so that ``import apipod.store`` (or a worker
process) does not pay for the web stack it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "APIPod": "apipod.app.pod",
    "JobProgress": "apipod.progress",
    "APIPodError": "apipod.errors",
    "JobCancelled": "apipod.errors",
    "ConfigError": "apipod.errors",
    "FileModel": "apipod.models",
    "JobResult": "apipod.models",
    "JobLinks": "apipod.models",
    "JobMetrics": "apipod.models",
    "HTTPError": "apipod.errors",
    "ImageFile": "media_toolkit",
    "AudioFile": "media_toolkit",
    "VideoFile": "media_toolkit",
    "MediaFile": "media_toolkit",
    "MediaList": "media_toolkit",
    "MediaDict": "media_toolkit",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apipod' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
