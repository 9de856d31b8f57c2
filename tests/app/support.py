"""Shared pieces of the synchronous-mode tests: served fixture apps, real media bytes,
and a loopback HTTP server that hands out media files."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
from media_toolkit import ImageFile

from apipod.loader import load_app
from tests.helpers import SERVICES, http_client, serve_in_thread


@contextlib.contextmanager
def served(service: str) -> Iterator[httpx.Client]:
    """A keep-alive client for ``tests/services/<service>.py`` on a real uvicorn server."""
    app = load_app(str(SERVICES / f"{service}.py"))
    with serve_in_thread(app) as url, http_client(url, timeout=30) as client:
        yield client


def png_bytes(side: int = 8, seed: int | None = None) -> bytes:
    """A real PNG; with ``seed`` the pixels are noise, so the size grows with ``side``."""
    if seed is None:
        pixels = np.zeros((side, side, 3), np.uint8)
    else:
        pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    return ImageFile().from_np_array(pixels).to_bytes()


def wav_bytes(frames: int = 800, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of silence, built with the standard library."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * frames)
    return buffer.getvalue()


def mp4_bytes(frames: int = 3, side: int = 16) -> bytes:
    """A tiny MPEG-4 video encoded with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = side
        stream.height = side
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{b64(data)}"


class MediaServer(ThreadingHTTPServer):
    """Serves ``files`` (path -> (bytes, content type)) on 127.0.0.1 and counts requests."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _MediaHandler)
        self.files = files
        self.hits: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _MediaHandler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        found = self.server.files.get(self.path)
        if found is None:
            self.send_error(404)
            return
        body, content_type = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def media_server(files: dict[str, tuple[bytes, str]]) -> Iterator[MediaServer]:
    server = MediaServer(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
