"""Training data: HR folders -> Y -> paper augmentation -> random LR/HR patch pairs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.metrics import image_files, imresize, modcrop, read_y

# The paper's augmentation: downscale by these factors (1.0 = the original) x 4 rotations.
DOWNSCALES = (1.0, 0.9, 0.8, 0.7, 0.6)


class DataError(Exception):
    """A data folder that cannot be used; the message says why and what to do."""


def resolve_data_dir(flag: str | None) -> Path:
    """The data folder from --data-dir, else $EDGE_SR_DATA."""
    value = flag or os.environ.get("EDGE_SR_DATA")
    if not value:
        raise DataError("no data folder: pass --data-dir DIR or set EDGE_SR_DATA")
    path = Path(value)
    if not path.is_dir():
        raise DataError(f"data folder not found: {path}")
    return path


def set_folder(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    try:
        image_files(folder)
    except FileNotFoundError as err:
        raise DataError(f"{err} (expected {name}/ with images inside {data_dir})") from None
    return folder


class PatchSampler:
    """Random (LR, HR) patch pairs from every augmented version of every training image.

    Rotations are applied per patch: MATLAB's bicubic kernel is symmetric, so rotating a
    patch pair equals cutting it from the rotated image pair.
    """

    def __init__(self, folders: list[Path], scale: int, lr_patch: int, seed: int = 0, progress: bool = True):
        self.scale, self.lr_patch = scale, lr_patch
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        files = [f for folder in folders for f in image_files(folder)]
        for path in tqdm(files, desc=f"preparing x{scale} pairs", disable=not progress, unit="img"):
            y = read_y(path)
            for factor in DOWNSCALES:
                hr = y if factor == 1.0 else imresize(y, factor)
                hr = modcrop(hr, scale)
                if min(hr.shape) < lr_patch * scale:
                    continue
                self.pairs.append((hr, imresize(hr, 1.0 / scale)))
        if not self.pairs:
            raise DataError(f"no training image is at least {lr_patch * scale} px on each side")
        areas = np.array([lr.size for _, lr in self.pairs], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, s = self.lr_patch, self.scale
        lr_out = np.empty((size, 1, p, p), np.float32)
        hr_out = np.empty((size, 1, p * s, p * s), np.float32)
        for i, k in enumerate(self.rng.choice(len(self.pairs), size=size, p=self.weights)):
            hr, lr = self.pairs[k]
            y = self.rng.integers(0, lr.shape[0] - p + 1)
            x = self.rng.integers(0, lr.shape[1] - p + 1)
            rot = int(self.rng.integers(4))
            lr_out[i, 0] = np.rot90(lr[y : y + p, x : x + p], rot)
            hr_out[i, 0] = np.rot90(hr[y * s : (y + p) * s, x * s : (x + p) * s], rot)
        return torch.from_numpy(lr_out / 255.0), torch.from_numpy(hr_out / 255.0)
