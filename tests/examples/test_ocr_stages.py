"""The OCR example's function in this process, with its real model (quick tier): the
stages it reports, and how many native threads a worker takes."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from media_toolkit import ImageFile

from apipod import HTTPError, JobProgress
from tests.examples.support import EXAMPLES, png, render_line

pytest.importorskip(
    "rapidocr_onnxruntime",
    reason="the OCR example needs rapidocr-onnxruntime: pip install -r examples/ocr/requirements.txt",
)


@pytest.fixture(scope="module")
def ocr() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("ocr_example", EXAMPLES / "ocr" / "service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        module.engine = module.load_engine(threads=1)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_read_reports_decode_detect_recognise_in_order(ocr: ModuleType) -> None:
    seen: list[str | None] = []
    progress = JobProgress(lambda value, message: seen.append(message))
    result = ocr.read(
        progress, ImageFile(file_name="in.png").from_bytes(png(render_line("OCR 4321 queue")))
    )
    assert [line["text"] for line in result["lines"]] == ["OCR 4321 queue"]
    assert [m.split()[0] for m in seen if m] == ["decode", "detect", "recognise"]
    assert seen[-1] == "recognise 1 line(s)"


def test_a_blank_image_has_no_lines(ocr: ModuleType) -> None:
    blank = ImageFile(file_name="in.png").from_bytes(png(render_line("")))
    assert ocr.read(JobProgress(), blank)["lines"] == []


def test_a_corrupt_image_is_a_422(ocr: ModuleType) -> None:
    with pytest.raises(HTTPError) as caught:
        ocr.decode(png(render_line("cut"))[:200])
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    ("workers", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 16, 8), (3, 16, 5)]
)
def test_each_worker_takes_its_share_of_the_cores(
    ocr: ModuleType, monkeypatch: pytest.MonkeyPatch, workers: int, cores: int, threads: int
) -> None:
    monkeypatch.delenv("OCR_THREADS", raising=False)
    assert ocr.native_threads(workers, cores) == threads
    monkeypatch.setenv("OCR_THREADS", "3")
    assert ocr.native_threads(workers, cores) == 3
