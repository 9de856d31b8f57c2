"""OCR with a real model: PaddleOCR's PP-OCRv4 (ONNX, shipped inside the
``rapidocr-onnxruntime`` wheel) in queue mode.

Run:  pip install -r examples/ocr/requirements.txt
      apipod start examples/ocr/service.py --max-workers 2
Try:  curl -s localhost:8000/read?wait=30 -F image=@page.png

``POST /read`` returns the lines found (``text``, ``confidence``, ``box``: four [x, y]
corners in pixels of the image sent) and ``annotated``, the image with the boxes drawn.
``POST /read-batch`` is the same per job, but recognises the text crops of up to 8 queued
images in one model call. Progress reports the stages: decode, detect, recognise.

Threads: each worker runs onnxruntime and OpenCV on ``cores // max_workers`` threads
(at least 1), so ``max_workers`` processes share the box's cores instead of fighting for
them; ``OCR_THREADS=n`` overrides it.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from apipod import APIPod, HTTPError, ImageFile, JobProgress

logger = logging.getLogger(__name__)

app = APIPod(compute="serverless", provider="localhost", title="ocr")

#: Images with a side beyond this are refused before they are decoded (the detector scales
#: everything down to 2,000 px anyway; a 20,000 px side is a mistake or an attack).
MAX_SIDE_PX = 8192
#: Below this, no text can be read: the model's smallest crop is 48 px high.
MIN_SIDE_PX = 8

engine: Any = None


def native_threads(max_workers: int | None = None, cores: int | None = None) -> int:
    """Threads per worker: the cores this process may use, shared by ``max_workers``
    workers (``APIPOD_MAX_WORKERS``, set by the supervisor), at least 1; ``OCR_THREADS``
    overrides it."""
    if os.environ.get("OCR_THREADS"):
        return max(1, int(os.environ["OCR_THREADS"]))
    workers = max_workers or int(os.environ.get("APIPOD_MAX_WORKERS", "1"))
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, workers))


def load_engine(threads: int, use_cuda: bool = False) -> Any:
    """The RapidOCR engine on ``threads`` native threads (onnxruntime intra-op pools of
    the detection, direction and recognition sessions, and OpenCV)."""
    from rapidocr_onnxruntime import RapidOCR  # noqa: PLC0415 - workers only

    cv2.setNumThreads(threads)
    return RapidOCR(
        intra_op_num_threads=threads,
        inter_op_num_threads=1,
        # The detector sees the image at its own size (up to 960 px a side). RapidOCR's
        # default scales the short side up to 736 px: a 120 px line of text became a
        # 736×3700 px input, 50 times slower, for no better reading.
        det_limit_type="max",
        det_limit_side_len=960,
        det_use_cuda=use_cuda,
        cls_use_cuda=use_cuda,
        rec_use_cuda=use_cuda,
    )


@app.on_worker_start
def load() -> None:
    """Once per worker: the three ONNX sessions, sized for this worker's share of cores."""
    global engine
    threads = native_threads()
    engine = load_engine(threads, use_cuda=os.environ.get("OCR_USE_CUDA") == "1")
    logger.info("OCR engine loaded on %d native thread(s)", threads)


# --- the three stages ---------------------------------------------------------------------------
def decode(data: bytes) -> np.ndarray:
    """BGR pixels of an encoded image; a clear :class:`HTTPError` (422) for anything that
    is no readable image. The size is read from the header before any pixel is decoded."""
    if not data:
        raise HTTPError(422, "the image is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Exception as exc:  # PIL raises several types for non-images
        raise HTTPError(422, "not an image: no known image format (send PNG, JPEG, ...)") from exc
    if max(width, height) > MAX_SIDE_PX:
        raise HTTPError(
            422, f"image is {width}×{height} px: its sides may be {MAX_SIDE_PX} px at most"
        )
    if min(width, height) < MIN_SIDE_PX:
        raise HTTPError(
            422, f"image is {width}×{height} px: too small to hold text (min {MIN_SIDE_PX} px)"
        )
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise HTTPError(422, "the image could not be decoded (truncated or corrupt)")
    return pixels


@dataclass
class Detection:
    """What the detector found in one image: the boxes (in the image's own pixels) and
    the crops the recogniser reads, in reading order."""

    boxes: np.ndarray
    crops: list[np.ndarray]


def detect(pixels: np.ndarray) -> Detection:
    """Text boxes and their upright crops (RapidOCR's own steps: resize, letterbox,
    DB detection, sorting, perspective crop, 180° direction classifier)."""
    raw_h, raw_w = pixels.shape[:2]
    image, ratio_h, ratio_w = engine.preprocess(pixels)
    record: dict[str, Any] = {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}}
    image, record = engine.maybe_add_letterbox(image, record)
    boxes, _ = engine.auto_text_det(image)
    if boxes is None:
        return Detection(np.zeros((0, 4, 2), np.float32), [])
    crops = engine.get_crop_img_list(image, boxes)
    crops, _, _ = engine.text_cls(crops)
    return Detection(engine._get_origin_points(boxes, record, raw_h, raw_w), crops)


def recognise(crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Text and confidence of each crop, in one recogniser call (batched internally by
    ``rec_batch_num``), whichever images the crops come from."""
    if not crops:
        return []
    results, _ = engine.text_rec(crops)
    return [(str(text), float(score)) for text, score, *_ in results]


def answer(pixels: np.ndarray, found: Detection, texts: list[tuple[str, float]]) -> dict:
    """The JSON answer: lines above the engine's score threshold, and the image with
    every kept box drawn."""
    lines = []
    annotated = pixels.copy()
    for box, (text, score) in zip(found.boxes, texts, strict=True):
        if score < engine.text_score:
            continue
        corners = np.round(box).astype(np.int32)
        cv2.polylines(annotated, [corners.reshape(-1, 1, 2)], True, (0, 0, 255), 2)
        lines.append({"text": text.strip(), "confidence": round(score, 4), "box": corners.tolist()})
    image = ImageFile(file_name="annotated.png").from_np_array(annotated, img_type="png")
    return {"lines": lines, "annotated": image}


def read_bytes(data: bytes, job_progress: JobProgress | None = None) -> dict:
    """``/read`` on the bytes of an encoded image (the benchmarks call it directly)."""
    job_progress = job_progress or JobProgress()
    job_progress.set_status(0.05, "decode")
    pixels = decode(data)
    job_progress.set_status(0.2, "detect")
    found = detect(pixels)
    job_progress.set_status(0.6, f"recognise {len(found.crops)} line(s)")
    texts = recognise(found.crops)
    return answer(pixels, found, texts)


# --- endpoints ----------------------------------------------------------------------------------
@app.endpoint("/read", queue_size=200)
def read(job_progress: JobProgress, image: ImageFile) -> dict:
    """The text lines in ``image`` (upload, base64, data URL or URL) and the image with
    their boxes drawn."""
    return read_bytes(image.to_bytes(), job_progress)


@app.endpoint("/read-batch", queue_size=200, batch_size=8, batch_wait_ms=10)
def read_batch(job_progress: JobProgress, image: list[ImageFile]) -> list:
    """``/read`` for up to 8 queued jobs at once: each image is decoded and detected on
    its own (the detector takes one image size per call), then the crops of all of them
    are recognised in one call. A bad image fails only its own job."""
    job_progress.set_status(0.05, f"decode {len(image)} image(s)")
    decoded: list[np.ndarray | Exception] = []
    for item in image:
        try:
            decoded.append(decode(item.to_bytes()))
        except HTTPError as exc:
            decoded.append(exc)
    job_progress.set_status(0.2, "detect")
    found = [detect(p) if isinstance(p, np.ndarray) else None for p in decoded]
    crops = [crop for f in found if f is not None for crop in f.crops]
    job_progress.set_status(0.6, f"recognise {len(crops)} line(s) of {len(image)} image(s)")
    texts = recognise(crops)
    results: list[Any] = []
    for pixels, f in zip(decoded, found, strict=True):
        if f is None:
            results.append(pixels)
            continue
        mine, texts = texts[: len(f.crops)], texts[len(f.crops) :]
        results.append(answer(pixels, f, mine))  # type: ignore[arg-type]
    return results
