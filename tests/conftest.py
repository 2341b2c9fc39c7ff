"""Shared fixtures: the data folder ($EDGE_SR_DATA or ../shared/datasets) and small synthetic images."""
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("EDGE_SR_DATA", ROOT.parent / "shared" / "datasets"))
    if not (path / "Set5").is_dir():
        pytest.skip(f"evaluation data not found at {path} (set EDGE_SR_DATA)")
    return path


def textured_image(h: int, w: int, seed: int) -> np.ndarray:
    """A natural-ish colour image: smooth gradients, edges and noise texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = 128 + 60 * np.sin(xx / (7 + 3 * c + seed) + yy / 11) + 30 * np.cos(yy / (5 + c))
    img[h // 3 : 2 * h // 3, w // 4 : w // 2] += 50
    img += cv2.GaussianBlur(rng.normal(0, 25, (h, w, 3)), (0, 0), 1.2)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A data folder laid out like ../shared/datasets with a few small synthetic images."""
    for folder, count, size in (("T91", 3, (96, 112)), ("BSD200", 2, (90, 120)), ("Set5", 2, (60, 72))):
        (tmp_path / folder).mkdir()
        for i in range(count):
            bgr = textured_image(*size, seed=i + 10 * len(folder))
            cv2.imwrite(str(tmp_path / folder / f"img{i}.png"), bgr)
    return tmp_path
