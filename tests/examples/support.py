"""Helpers for the tests of the example services under ``examples/``: each is started
with ``apipod start examples/<name>/service.py`` in its own process group and data dir."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np

from tests.helpers import ServiceProcess, apipod_command, free_port, service_env, wait_for_status

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextlib.contextmanager
def running_example(tmp_path: Path, name: str, **settings: object) -> Iterator[ServiceProcess]:
    """``apipod start examples/<name>/service.py`` on CPU workers, until healthy."""
    port = free_port()
    env = service_env(tmp_path / "data", port=port, gpus="none", **settings)
    args = apipod_command("start", str(EXAMPLES / name / "service.py"))
    service = ServiceProcess(args, env, port, tmp_path / "service.log").start()
    try:
        service.wait_until("/health", status=200, timeout=120)
        yield service
    finally:
        service.stop()


def png(pixels: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", pixels)
    assert ok
    return buffer.tobytes()


def render_line(text: str, scale: float = 1.5) -> np.ndarray:
    """``text`` in black on white, in OpenCV's Hershey font, large and clear."""
    width = int(40 + 20 * scale * len(text))
    pixels = np.full((int(80 * scale), width, 3), 255, np.uint8)
    origin = (20, int(55 * scale))
    cv2.putText(pixels, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    return pixels


def finished(client: httpx.Client, response: httpx.Response, timeout: float = 120) -> dict:
    """The final status of the job a submit answered with (4xx answers are returned)."""
    body = response.json()
    if response.status_code >= 400 or body.get("status") in ("finished", "failed"):
        return body
    return wait_for_status(client, body["job_id"], {"finished", "failed"}, timeout=timeout)
