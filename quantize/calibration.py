"""Calibration data: LR patches cut from the training sets (never from Set5/Set14)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import PatchSampler, set_folder

CALIBRATION_SETS = ("T91", "BSD200")


def calibration_patches(data_dir: Path, scale: int, count: int = 64, size: int = 48, seed: int = 1234) -> np.ndarray:
    """`count` LR patches (N x 1 x size x size, float32 in 0..1) with a fixed seed, so rebuilds match."""
    folders = [set_folder(data_dir, name) for name in CALIBRATION_SETS]
    sampler = PatchSampler(folders, scale, size, seed=seed, progress=False)
    lr, _ = sampler.batch(count)
    return lr.numpy()
