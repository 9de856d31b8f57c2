"""Fixture: a service that logs and warns while it is imported, whose endpoint's own thread
raises, and whose API process (only) fails to import it when ``CRASH_API`` is set."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import warnings

from apipod import APIPod

log = logging.getLogger("service.noisy")
log.warning("loading weights")
warnings.warn("weights in an old format", UserWarning, stacklevel=1)

in_a_child = multiprocessing.parent_process() is not None
if os.environ.get("CRASH_API") and in_a_child and "CUDA_VISIBLE_DEVICES" not in os.environ:
    raise RuntimeError("the API process cannot import this service")  # workers have it set

app = APIPod(title="noisy")


@app.endpoint("/thread")
def thread() -> dict:
    """A thread of the endpoint's own that dies of an exception nobody catches."""

    def fail() -> None:
        raise ValueError("a helper thread failed")

    helper = threading.Thread(target=fail, name="helper")
    helper.start()
    helper.join()
    return {"ok": True}
