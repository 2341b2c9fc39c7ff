"""OpenCV dnn_superres's FSRCNN/ESPCN graphs (TensorFlow .pb) behind the same `run(y)` interface,
for side-by-side benchmarks only: edge-sr never ships or loads them by itself.

dnn_superres (opencv-contrib) feeds the Y channel / 255 to the graph and registers a
DepthToSpace layer that plain OpenCV's TensorFlow importer lacks; this does the same with
cv2.dnn from opencv-python-headless, so no contrib build is needed.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.backends import Upscaler
from edge_runtime.errors import BackendError


class _DepthToSpace:
    """TF's DepthToSpace (DCR order) as an OpenCV custom layer."""

    def __init__(self, params, blobs):
        self.block = 1

    def getMemoryShapes(self, inputs):
        n, c, h, w = inputs[0]
        self.block = int(round(c**0.5))
        b = self.block
        return [[n, c // (b * b), h * b, w * b]]

    def forward(self, inputs):
        x = inputs[0]
        n, c, h, w = x.shape
        b = self.block
        out = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        return [np.ascontiguousarray(out.reshape(n, c // (b * b), h * b, w * b))]


_registered = False


class OpenCVSuperRes(Upscaler):
    backend = "opencv-dnn"

    def __init__(self, path: Path, threads: int = 0):
        global _registered
        if not _registered:
            cv2.dnn_registerLayer("DepthToSpace", _DepthToSpace)
            _registered = True
        if threads:
            cv2.setNumThreads(threads)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(path))
        except cv2.error as err:
            raise BackendError(f"{path}: OpenCV cannot read this graph ({str(err).strip().splitlines()[-1][:120]})") from None

    def _run(self, y: np.ndarray) -> np.ndarray:
        self.net.setInput(cv2.dnn.blobFromImage(y.astype(np.float32) * (1.0 / 255.0)))
        return self.net.forward()[0, 0] * 255.0


def peer_models(folder: Path, scale: int) -> dict[str, Path]:
    """{'opencv FSRCNN': path, 'opencv FSRCNN-small': path} present in `folder` for `scale`."""
    names = {"FSRCNN": "opencv FSRCNN", "FSRCNN-small": "opencv FSRCNN-small"}
    return {label: Path(folder) / f"{stem}_x{scale}.pb" for stem, label in names.items()
            if (Path(folder) / f"{stem}_x{scale}.pb").is_file()}
