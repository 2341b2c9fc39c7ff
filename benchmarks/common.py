"""Shared by the benchmark scripts: the machine record and a model-only timer."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from edge_runtime.autoselect import device_id
from edge_runtime.files import write_json

RESULTS = Path(__file__).resolve().parents[1] / "results"


def machine() -> dict:
    return {"device": device_id(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def time_model(run, size: tuple[int, int], seconds: float = 2.0, min_runs: int = 3) -> float:
    """Model-only frames per second on a textured uint8 frame of `size` (w, h), after a warm-up."""
    w, h = size
    frame = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    run(frame)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        run(frame)
        runs += 1
    return runs / (time.perf_counter() - start)


def save(name: str, data: dict) -> Path:
    return write_json(RESULTS / name, data)
