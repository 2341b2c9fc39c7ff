"""A large photo through the runtime in one piece and in tiles: seconds and peak memory, and the proof that
the tiled output is the whole one (same bytes). Each measurement runs in its own process, so each peak
memory is its own.

    python benchmarks/large_photo.py         # writes results/large_photo.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save  # noqa: E402

MODELS = ["fsrcnn_x2_fp32.onnx", "fsrcnn_x2_int8.onnx", "fsrcnn_x2_fp32.tflite", "fsrcnn_x2_int8.tflite"]


def photo(size: tuple[int, int]):
    """A textured BGR image: a Set5-like scene is not needed for speed or memory, and no data folder is."""
    import cv2
    import numpy as np

    w, h = size
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray((cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) // 2
                                 + rng.integers(0, 128, (h, w, 3), dtype=np.uint8)))


def measure(model: str, size: tuple[int, int], threads: int, tiled: bool) -> dict:
    """In this process: one upscale of the photo, its seconds, this process's peak memory, the output's digest."""
    import numpy as np

    from edge_runtime.backends import load_upscaler
    from edge_runtime.models import MODELS_DIR

    image = photo(size)
    upscaler = load_upscaler(MODELS_DIR / model, threads)
    if not tiled:
        upscaler.whole_limit = np.inf
    start = time.perf_counter()
    out = upscaler.upscale_bgr(image)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "sha256": hashlib.sha256(out.tobytes()).hexdigest()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--size", default="4000x3000", help="the photo's size, WxH (default: 4000x3000, 12 megapixels)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.child:
        print(json.dumps(measure(args.models[0], size, args.threads, args.child == "tiled")))
        return 0
    rows = []
    for model in args.models:
        runs = {}
        for mode in ("whole", "tiled"):
            child = subprocess.run([sys.executable, __file__, "--child", mode, "--models", model, "--size", args.size,
                                    "--threads", str(args.threads)], capture_output=True, text=True)
            if child.returncode != 0:
                print(f"large_photo.py: {model} {mode}: {child.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 1
            runs[mode] = json.loads(child.stdout.strip().splitlines()[-1])
        row = {"model": model, **{f"{mode}_{key}": value for mode, r in runs.items() for key, value in r.items()
                                  if key != "sha256"},
               "same_output": runs["whole"]["sha256"] == runs["tiled"]["sha256"],
               "tiled_speedup": round(runs["whole"]["seconds"] / runs["tiled"]["seconds"], 2),
               "tiled_memory_share": round(runs["tiled"]["peak_mb"] / runs["whole"]["peak_mb"], 3)}
        rows.append(row)
        print(f"{model:24s} whole {row['whole_seconds']:6.1f} s {row['whole_peak_mb']:6d} MB | tiled "
              f"{row['tiled_seconds']:6.1f} s {row['tiled_peak_mb']:6d} MB | {row['tiled_speedup']:.2f}x as fast, "
              f"{row['tiled_memory_share']:.0%} of the memory, same output: {row['same_output']}", flush=True)
    path = save("large_photo.json", {"machine": machine(), "size": args.size, "threads": args.threads, "rows": rows})
    print(f"wrote {path}")
    return 0 if all(r["same_output"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
