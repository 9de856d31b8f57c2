"""``JobProgress``: how a running job reports progress (and learns it was cancelled)."""

from __future__ import annotations

import math
from collections.abc import Callable

ProgressSink = Callable[[float | None, str | None], None]


class JobProgress:
    """Handed to an endpoint that declares a ``job_progress: JobProgress`` parameter.

    ``set_status(progress, message)`` records how far the job is (``progress`` from 0.0
    to 1.0, clamped) and an optional human-readable message. In queue mode the values
    reach ``GET /status/{id}``; when the job was cancelled, ``set_status`` raises
    :class:`apipod.errors.JobCancelled` so the job stops at its next report.
    """

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink
        self.progress: float = 0.0
        self.message: str | None = None

    def set_status(self, progress: float | None = None, message: str | None = None) -> None:
        if progress is not None:
            progress = _clamp(float(progress))
            self.progress = progress
        if message is not None:
            self.message = str(message)
        if self._sink is not None:
            self._sink(progress, self.message)


def _clamp(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))
