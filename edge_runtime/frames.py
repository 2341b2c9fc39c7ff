"""Frames as the SR pipeline sees them: a BT.601 Y plane plus chroma, and the colour conversions.

Every source hands over a `Frame`; conversions use OpenCV's SIMD `cv2.transform` with the
studio-swing BT.601 matrix of `metrics`, so the Y the net sees is the Y it was trained on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_runtime.metrics import RGB_TO_YCBCR, YCBCR_OFFSET

# BGR (OpenCV order) -> YCrCb rows, with the offset as a 4th column, for cv2.transform.
_BGR_TO_YCRCB = np.hstack([RGB_TO_YCBCR[[0, 2, 1]][:, ::-1], YCBCR_OFFSET[[0, 2, 1], None]]).astype(np.float32)
_YCRCB_TO_BGR = np.linalg.inv(np.vstack([_BGR_TO_YCRCB, [0, 0, 0, 1]]))[:3].astype(np.float32)


def bgr_to_ycrcb(bgr: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 BGR -> HxWx3 uint8 (Y, Cr, Cb), BT.601 studio swing."""
    return cv2.transform(bgr, _BGR_TO_YCRCB)


def ycrcb_to_bgr(ycrcb: np.ndarray) -> np.ndarray:
    return cv2.transform(ycrcb, _YCRCB_TO_BGR)


@dataclass
class Frame:
    """One captured frame. `chroma` is HxWx2 (Cr, Cb) at any size, or None for greyscale.
    `truth` is the HR BGR image when the source knows it (the demo scene) and `truth_y` its Y plane,
    for live PSNR. `name` is the file it came from, for sources that read files one per frame."""

    y: np.ndarray
    chroma: np.ndarray | None
    index: int
    captured: float = field(default_factory=time.perf_counter)
    truth: np.ndarray | None = None
    truth_y: np.ndarray | None = None
    name: str | None = None

    @classmethod
    def from_bgr(cls, bgr: np.ndarray, index: int, truth: np.ndarray | None = None,
                 truth_y: np.ndarray | None = None, name: str | None = None) -> "Frame":
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        ycrcb = bgr_to_ycrcb(bgr)
        # planes copied out (OpenCV resizes a strided view 3x slower) by mixChannels: half the time of numpy's
        # strided copies, at 640x360 0.8 ms of the capture thread's 1.7
        y, chroma = np.empty(bgr.shape[:2], np.uint8), np.empty((*bgr.shape[:2], 2), np.uint8)
        cv2.mixChannels([ycrcb], [y, chroma], [0, 0, 1, 1, 2, 2])
        return cls(y=y, chroma=chroma, index=index, truth=truth, truth_y=truth_y, name=name)

    def to_bgr(self) -> np.ndarray:
        return compose(self.y, self.chroma)


_scratch = threading.local()


def _scratch_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-thread array reused from frame to frame: at 1280x960, allocating the intermediates afresh
    for every frame cost more (page faults) than the conversion itself."""
    array = getattr(_scratch, name, None)
    if array is None or array.shape != shape:
        array = np.empty(shape, np.uint8)
        setattr(_scratch, name, array)
    return array


def compose(y: np.ndarray, chroma: np.ndarray | None) -> np.ndarray:
    """A BGR image from a Y plane and (Cr, Cb) chroma upscaled to Y's size (bilinear)."""
    h, w = y.shape
    if chroma is None:
        return cv2.cvtColor(y, cv2.COLOR_GRAY2BGR)
    if chroma.shape[:2] != (h, w):
        chroma = cv2.resize(chroma, (w, h), dst=_scratch_array("chroma", (h, w, 2)), interpolation=cv2.INTER_LINEAR)
    ycrcb = _scratch_array("ycrcb", (h, w, 3))
    cv2.mixChannels([y, chroma], [ycrcb], [0, 0, 1, 1, 2, 2])
    return ycrcb_to_bgr(ycrcb)
