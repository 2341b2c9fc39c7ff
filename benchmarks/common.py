"""Shared by the benchmark scripts: the machine record and a model-only timer."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge_runtime.cpu import device_id
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


def conversion_parser(doc: str, models: list[str], size: str, seconds: float) -> argparse.ArgumentParser:
    """The options of the benchmarks that convert checkpoints themselves (calibrating on the data sets)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=models)
    p.add_argument("--size", default=size)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=seconds)
    p.add_argument("--data-dir", help="calibration sets (T91, BSD200); default $EDGE_SR_DATA")
    return p


def calibration_dir(args: argparse.Namespace, script: str) -> Path | None:
    """The data folder, or None after a one-line error."""
    from training.data import DataError, resolve_data_dir  # torch: only these benchmarks need it

    try:
        return resolve_data_dir(args.data_dir)
    except DataError as err:
        print(f"{script}: error: {err}", file=sys.stderr)
        return None


def checkpoints_with_calibration(models: list[str], data_dir: Path):
    """(model id, shipped checkpoint, its calibration patches) for each of `models`."""
    from quantize.calibration import calibration_patches
    from training.evaluate import WEIGHTS_DIR
    from training.model import load_weights

    for ident in models:
        model = load_weights(WEIGHTS_DIR / f"{ident}.pt")
        yield ident, model, calibration_patches(data_dir, model.config.scale)
