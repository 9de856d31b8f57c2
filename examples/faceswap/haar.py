"""Viola-Jones face detection with an OpenCV Haar cascade file, evaluated in numpy.

OpenCV 5 no longer has ``cv2.CascadeClassifier`` (nor ships ``cv2.data.haarcascades``),
but the trained cascades still work: this reads OpenCV's XML format (stump-based BOOST
stages of HAAR features, as ``haarcascade_frontalface_default.xml``) and evaluates it the
way OpenCV does: an image pyramid, a 24×24 window, feature sums from an integral image
normalised by the window's standard deviation, stages that reject early, and the hits
grouped as ``cv2.groupRectangles`` does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

Rect = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Stage:
    """One boosted stage: per weak classifier its feature's rectangles (``rects``:
    weak × 3 × [x, y, w, h, weight], unused ones with weight 0), threshold and leaves."""

    threshold: float
    rects: np.ndarray
    node_thresholds: np.ndarray
    leaves: np.ndarray  # weak × 2: value below the threshold, value above it


class HaarCascade:
    """A stump-based Haar cascade read from an OpenCV XML file."""

    def __init__(self, path: str | Path) -> None:
        root = ET.parse(path).getroot().find("cascade")
        if root is None or root.findtext("featureType", "").strip() != "HAAR":
            raise ValueError(f"{path} is not an OpenCV Haar cascade")
        self.size = (int(root.findtext("width", "0")), int(root.findtext("height", "0")))
        features = [_feature_rects(f) for f in _children(root, "features")]
        self.stages = [_stage(s, features) for s in _children(root, "stages")]

    def detect(
        self,
        gray: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int = 30,
    ) -> list[Rect]:
        """Faces in a grayscale image, as (x, y, w, h) in its pixels, largest first."""
        hits: list[Rect] = []
        height, width = gray.shape[:2]
        factor = 1.0
        while width / factor >= self.size[0] and height / factor >= self.size[1]:
            if self.size[0] * factor >= min_size:
                hits.extend(self._detect_at(gray, factor))
            factor *= scale_factor
        faces = group_rectangles(hits, min_neighbors)
        return sorted(faces, key=lambda r: r[2] * r[3], reverse=True)

    def _detect_at(self, gray: np.ndarray, factor: float) -> list[Rect]:
        scaled_w, scaled_h = round(gray.shape[1] / factor), round(gray.shape[0] / factor)
        small = cv2.resize(gray, (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR)
        sums, squares = cv2.integral2(small, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        step = 1 if factor > 2 else 2
        win_w, win_h = self.size
        ys, xs = np.mgrid[0 : scaled_h - win_h + 1 : step, 0 : scaled_w - win_w + 1 : step]
        ys, xs = ys.ravel(), xs.ravel()
        inverse_norm = _inverse_norm(sums, squares, ys, xs, win_w, win_h)
        for stage in self.stages:
            total = _stage_sum(stage, sums, ys, xs, inverse_norm)
            keep = total >= stage.threshold
            ys, xs, inverse_norm = ys[keep], xs[keep], inverse_norm[keep]
            if not len(ys):
                return []
        size_w, size_h = round(win_w * factor), round(win_h * factor)
        return [
            (round(x * factor), round(y * factor), size_w, size_h)
            for y, x in zip(ys, xs, strict=True)
        ]


def _children(node: ET.Element, tag: str) -> list[ET.Element]:
    found = node.find(tag)
    return list(found) if found is not None else []


def _feature_rects(node: ET.Element) -> np.ndarray:
    rects = np.zeros((3, 5))
    for i, rect in enumerate(_children(node, "rects")):
        rects[i] = [float(v) for v in (rect.text or "").split()]
    return rects


def _stage(node: ET.Element, features: list[np.ndarray]) -> Stage:
    weak = _children(node, "weakClassifiers")
    nodes = [(w.findtext("internalNodes") or "").split() for w in weak]
    if any(len(n) != 4 for n in nodes):
        raise ValueError("only stump-based cascades (one node per weak classifier) are read")
    leaves = [[float(v) for v in (w.findtext("leafValues") or "").split()] for w in weak]
    return Stage(
        threshold=float(node.findtext("stageThreshold", "0")),
        rects=np.stack([features[int(n[2])] for n in nodes]),
        node_thresholds=np.array([float(n[3]) for n in nodes]),
        leaves=np.array(leaves),
    )


def _rect_sum(
    table: np.ndarray, y: np.ndarray, x: np.ndarray, w: np.ndarray, h: np.ndarray
) -> np.ndarray:
    return table[y + h, x + w] - table[y, x + w] - table[y + h, x] + table[y, x]


def _inverse_norm(
    sums: np.ndarray, squares: np.ndarray, ys: np.ndarray, xs: np.ndarray, win_w: int, win_h: int
) -> np.ndarray:
    """1 / (area × standard deviation) of each window's inner rectangle, as OpenCV
    normalises feature values (so lighting and contrast do not matter)."""
    w, h = np.full_like(ys, win_w - 2), np.full_like(ys, win_h - 2)
    total = _rect_sum(sums, ys + 1, xs + 1, w, h)
    total_sq = _rect_sum(squares, ys + 1, xs + 1, w, h)
    norm = (win_w - 2) * (win_h - 2) * total_sq - total * total
    return 1.0 / np.where(norm > 0, np.sqrt(np.maximum(norm, 0)), 1.0)


def _stage_sum(
    stage: Stage, sums: np.ndarray, ys: np.ndarray, xs: np.ndarray, inverse_norm: np.ndarray
) -> np.ndarray:
    """The stage's score for every window (windows × weak classifiers at once)."""
    value = np.zeros((len(ys), len(stage.rects)))
    for k in range(3):
        x, y, w, h, weight = (stage.rects[:, k, i] for i in range(5))
        if not weight.any():
            continue
        ix, iy, iw, ih = (a.astype(np.int64)[None, :] for a in (x, y, w, h))
        value += weight[None, :] * _rect_sum(sums, ys[:, None] + iy, xs[:, None] + ix, iw, ih)
    value *= inverse_norm[:, None]
    below = value < stage.node_thresholds[None, :]
    return np.where(below, stage.leaves[None, :, 0], stage.leaves[None, :, 1]).sum(axis=1)


def group_rectangles(rects: list[Rect], min_neighbors: int, eps: float = 0.2) -> list[Rect]:
    """OpenCV's grouping: rectangles of similar position and size form a cluster; a
    cluster of more than ``min_neighbors`` becomes one rectangle, their average."""
    parent = list(range(len(rects)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(rects):
        for j in range(i):
            if _similar(a, rects[j], eps):
                parent[find(i)] = find(j)
    clusters: dict[int, list[Rect]] = {}
    for i, rect in enumerate(rects):
        clusters.setdefault(find(i), []).append(rect)
    return [
        tuple(int(round(v)) for v in np.mean(members, axis=0))  # type: ignore[misc]
        for members in clusters.values()
        if len(members) > min_neighbors
    ]


def _similar(a: Rect, b: Rect, eps: float) -> bool:
    delta = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
    return (
        abs(a[0] - b[0]) <= delta
        and abs(a[1] - b[1]) <= delta
        and abs(a[0] + a[2] - b[0] - b[2]) <= delta
        and abs(a[1] + a[3] - b[1] - b[3]) <= delta
    )
