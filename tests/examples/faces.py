"""A face drawn with OpenCV that the frontal face Haar cascade detects (hair, brows, eyes
with pupils, nose line, mouth, softened by a blur), and scenes to put it in."""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND = (90, 110, 100)


def drawn_face(
    size: int = 200, skin: tuple[int, int, int] = (150, 180, 215), mole: bool = False
) -> np.ndarray:
    """A ``size``×``size`` BGR image of one frontal face on a plain background; ``mole``
    adds a dark spot on its left cheek (at :func:`mole_at`), a mark to follow in a swap."""
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    cx, cy = size // 2, size // 2 + size // 20
    fw, fh = int(size * 0.30), int(size * 0.40)
    hair = (cx, cy - fh // 3), (int(fw * 1.1), int(fh * 0.8))
    cv2.ellipse(img, hair[0], hair[1], 0, 180, 360, (30, 30, 40), -1)
    cv2.ellipse(img, (cx, cy), (fw, fh), 0, 0, 360, skin, -1)
    ey, ex = cy - fh // 5, int(fw * 0.45)
    for side in (-1, 1):
        eye = (cx + side * ex, ey)
        cv2.ellipse(img, eye, (fw // 5, fh // 12), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, eye, fh // 14, (40, 30, 20), -1)
        brow = ((eye[0] - fw // 5, ey - fh // 6), (eye[0] + fw // 5, ey - fh // 5))
        cv2.line(img, brow[0], brow[1], (40, 40, 50), max(2, size // 60))
    nose_shade = tuple(int(v * 0.8) for v in skin)
    cv2.line(
        img, (cx, ey + fh // 10), (cx - fw // 10, cy + fh // 4), nose_shade, max(2, size // 80)
    )
    cv2.ellipse(img, (cx, cy + fh // 2), (fw // 3, fh // 12), 0, 0, 360, (60, 60, 150), -1)
    if mole:
        cv2.circle(img, mole_at(size), size // 25, (20, 20, 20), -1)
    return cv2.GaussianBlur(img, (0, 0), size / 120)


def mole_at(size: int = 200) -> tuple[int, int]:
    """Where ``drawn_face(size, mole=True)`` has its mole, in the face's square."""
    return size // 2 + int(size * 0.15), size // 2 + size // 20 + int(size * 0.08)


def scene_with_face(
    width: int,
    height: int,
    at: tuple[int, int],
    size: int = 200,
    mole: bool = False,
) -> np.ndarray:
    """A ``width``×``height`` scene with a drawn face whose square's top left is ``at``."""
    scene = np.full((height, width, 3), BACKGROUND, np.uint8)
    x, y = at
    scene[y : y + size, x : x + size] = drawn_face(size, mole=mole)
    return scene
