"""`--model auto`: the highest-PSNR shipped model that holds the target fps at this size on this
device, found by a short measured trial and cached per device."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from edge_runtime.backends import runtime_signature
from edge_runtime.cpu import device_id
from edge_runtime.errors import BackendError
from edge_runtime.files import write_json
from edge_runtime.models import Artifact, open_model

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-sr" / "auto.json"


def measure_fps(upscaler, size: tuple[int, int], seconds: float = 1.0, max_runs: int = 20) -> float:
    """Frames per second of the model alone on a textured frame of `size` (after one warm-up run)."""
    w, h = size
    frame = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    upscaler.run(frame)
    runs, start = 0, time.perf_counter()
    while runs < max_runs and (runs < 2 or time.perf_counter() - start < seconds):
        upscaler.run(frame)
        runs += 1
    return runs / (time.perf_counter() - start)


def cache_key(artifact: Artifact, size: tuple[int, int], threads: int) -> str:
    """What a measured fps holds for: this device, these exact model bytes (a retrained model keeps its
    name and often its size), the runtime and its options, the frame size and the thread count."""
    digest = hashlib.sha256(artifact.path.read_bytes()).hexdigest()[:16]
    return (f"{device_id()}|{artifact.name}|{digest}|{runtime_signature(artifact.path)}"
            f"|{size[0]}x{size[1]}|t{threads}")


# A model holds a target when it runs this much faster than it on its own: room for capture and output.
MARGIN = 1.25


def choose(candidates: list[Artifact], size: tuple[int, int], scale: int, threads: int,
           target_fps: float, log=print, cache_path: Path = CACHE) -> tuple[Artifact, float]:
    """(artifact, measured model fps). Candidates come best quality first; the first that holds
    the target (by MARGIN) wins, else the fastest."""
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    measured: list[tuple[Artifact, float]] = []
    for artifact in candidates:
        key = cache_key(artifact, size, threads)
        fps = cache.get(key)
        if fps is None:
            try:
                fps = measure_fps(open_model(artifact.path, scale, threads), size)
            except BackendError as err:
                log(f"auto: skipping {artifact.name}: {err}")
                continue
            cache[key] = fps
            log(f"auto: {artifact.name} runs at {fps:.1f} fps at {size[0]}x{size[1]}")
        measured.append((artifact, fps))
        if fps >= MARGIN * target_fps:
            break
    if not measured:
        raise BackendError("auto: no shipped model could be loaded on this device")
    try:
        write_json(cache_path, cache, indent=1)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    meeting = [m for m in measured if m[1] >= MARGIN * target_fps]
    return meeting[0] if meeting else max(measured, key=lambda m: m[1])
