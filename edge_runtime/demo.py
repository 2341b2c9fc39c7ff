"""A built-in moving scene with known ground truth, so live PSNR works with no camera and no data.

The scene (text, hard edges, gradients, texture) is rendered once at high resolution and
downscaled once with the project's MATLAB-style bicubic; each frame is a crop of both that
pans along a smooth path in whole LR pixels, like a camera looking at a larger world.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from edge_runtime.frames import Frame, bgr_to_ycrcb
from edge_runtime.metrics import imresize

MARGIN = 0.25  # extra canvas on each side, the room the view pans in


def render_scene(width: int, height: int, scale: int = 2, seed: int = 0) -> np.ndarray:
    """A BGR test card of the given (HR) size, its finest detail below the LR Nyquist limit for `scale`
    (a camera's optics do that; aliased detail no upscaler can restore would only measure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 90 + 80 * xx / width  # gradients
    img[..., 1] = 60 + 120 * yy / height
    img[..., 2] = 140 + 60 * np.sin(xx / 47.0) * np.cos(yy / 61.0)
    texture = cv2.GaussianBlur(rng.normal(0, 30, (height, width)).astype(np.float32), (0, 0), 0.75 * scale)
    img += texture[..., None]
    cx, cy = width * 0.7, height * 0.35  # zone plate: every spatial frequency, every direction
    radius = min(width, height) * 0.25
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2
    plate = r2 < 1
    top_frequency = 0.8 * np.pi / scale  # radians per HR pixel at the rim, 80% of the LR Nyquist limit
    img[plate] = (128 + 100 * np.cos(top_frequency * radius / 2 * r2[plate]))[:, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    step = max(24, width // 24)
    for x in range(step, width // 2, step):  # hard-edged checker strip and lines
        cv2.rectangle(img, (x, height - 3 * step), (x + step // 2, height - 2 * step), (20, 20, 20), -1)
        cv2.line(img, (x, int(height * 0.6)), (x + step, int(height * 0.75)), (250, 250, 250), 2, cv2.LINE_AA)
    for i, size in enumerate((0.6, 1.0, 1.6, 2.4)):
        scale = size * width / 1280
        cv2.putText(img, "edge-sr FSRCNN 0123456789", (int(width * 0.05), int(height * (0.12 + 0.1 * i))),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    for _ in range(12):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, center, int(rng.integers(8, max(9, width // 20))), color, 2, cv2.LINE_AA)
    return img


class DemoSource:
    """Frames of `size` (LR, w x h) with HR truth at `scale` x that size."""

    live = False
    name = "demo"
    frame_count = None  # endless

    def __init__(self, size: tuple[int, int] = (640, 480), scale: int = 2, fps: float = 30.0):
        w, h = size
        self.size, self.scale, self.fps = size, scale, fps
        self.margin = (int(w * MARGIN), int(h * MARGIN))
        canvas_lr = (w + 2 * self.margin[0], h + 2 * self.margin[1])
        self.hr = render_scene(canvas_lr[0] * scale, canvas_lr[1] * scale, scale)
        self.lr = imresize(self.hr, 1.0 / scale)
        self.hr_y = bgr_to_ycrcb(self.hr)[..., 0]  # once, so live PSNR costs no colour conversion per frame
        self.index = 0

    def read(self) -> Frame:
        t = self.index / self.fps
        mx, my = self.margin
        x = int(round(mx * (1 + math.sin(2 * math.pi * t / 8.0))))
        y = int(round(my * (1 + math.sin(2 * math.pi * t / 5.0 + 1.0))))
        w, h = self.size
        s = self.scale
        lr = self.lr[y : y + h, x : x + w]
        hr = (slice(y * s, (y + h) * s), slice(x * s, (x + w) * s))
        frame = Frame.from_bgr(np.ascontiguousarray(lr), self.index, truth=self.hr[hr], truth_y=self.hr_y[hr])
        self.index += 1
        return frame

    def close(self) -> None:
        pass
