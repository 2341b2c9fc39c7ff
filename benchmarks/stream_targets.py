"""The edge runtime's throughput bar, end to end (frames in -> frames out through the stream
pipeline), 2 threads, with OpenCV dnn_superres and bicubic run in the same process:

    python benchmarks/stream_targets.py --opencv-models ../shared/peers/opencv_dnn_superres

Every worker first upscales one untimed frame of the stream's size. Every contender runs `--repeats` times, the
rounds interleaved so that drift on the machine touches all of them alike; fps is the median run, and every run's
fps is kept. Set5 PSNR is that of the uint8 frames each contender streams (`upscale`), not of its float output.
Writes results/stream_targets.json (the README table comes from it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save  # noqa: E402
from edge_runtime.backends import Upscaler  # noqa: E402
from edge_runtime.demo import DemoSource  # noqa: E402
from edge_runtime.metrics import evaluate_set, load_eval_set  # noqa: E402
from edge_runtime.models import find, open_workers  # noqa: E402
from edge_runtime.opencv_peer import OpenCVSuperRes  # noqa: E402
from edge_runtime.pipeline import Pipeline  # noqa: E402
from edge_runtime.stats import StreamStats  # noqa: E402

# (edge-sr family, OpenCV model of the same name, LR size, the fps the issue asks for)
TARGETS = [("fsrcnn-s", "FSRCNN-small", (640, 480), 30.0), ("fsrcnn", "FSRCNN", (640, 360), 24.0)]


class Bicubic(Upscaler):
    """OpenCV's bicubic resize: the baseline every ratio is taken against."""

    def __init__(self, scale):
        self.scale = scale

    def upscale(self, y):
        return cv2.resize(y, (y.shape[1] * self.scale, y.shape[0] * self.scale), interpolation=cv2.INTER_CUBIC)


def stream(upscalers, size, seconds, demos) -> dict:
    demos.setdefault(size, DemoSource(size, 2))
    summary = Pipeline(demos[size], upscalers, 2, [], StreamStats(24), seconds=seconds, status=None, live_psnr=False).run()
    return {"fps": summary["fps"], "stage_ms": {k: v.get("mean") for k, v in summary["stage_ms"].items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--opencv-models", required=True)
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    cv2.setNumThreads(args.threads)
    pairs = load_eval_set(Path(args.data_dir) / "Set5", 2)
    demos, rows = {}, []
    for family, peer_name, size, goal in TARGETS:
        contenders = {"bicubic (OpenCV)": [Bicubic(2)],
                      f"OpenCV dnn {peer_name}": [OpenCVSuperRes(Path(args.opencv_models) / f"{peer_name}_x2.pb", args.threads)]}
        for artifact in find(family, 2, None, None):
            contenders[artifact.name] = open_workers(artifact.path, 2, args.threads, 1, artifact.backend)
            contenders[f"{artifact.name}, {args.threads} workers"] = open_workers(
                artifact.path, 2, args.threads, args.threads, artifact.backend)
        warm_y = demos.setdefault(size, DemoSource(size, 2)).read().y
        for upscalers in contenders.values():  # a session's first frame of a new size is slow (buffers, kernels): not timed
            for upscaler in upscalers:
                upscaler.upscale(warm_y)
        quality = {}
        for name, upscalers in contenders.items():
            model = name.split(",")[0]
            if model not in quality:
                quality[model] = round(evaluate_set(upscalers[0].upscale, pairs, 2)["psnr"], 3)
        runs = {name: [] for name in contenders}
        for round_ in range(args.repeats):
            for name, upscalers in contenders.items():
                runs[name].append(stream(upscalers, size, args.seconds, demos))
                print(f"{family} {size[0]}x{size[1]} run {round_ + 1}/{args.repeats}  {name:38s} "
                      f"{runs[name][-1]['fps']:6.1f} fps", flush=True)
        results = {}
        for name, measured in runs.items():
            median = sorted(measured, key=lambda r: r["fps"])[len(measured) // 2]
            results[name] = {**median, "fps_runs": [r["fps"] for r in measured], "workers": len(contenders[name]),
                             "set5_psnr": quality[name.split(",")[0]]}
        peer = results[f"OpenCV dnn {peer_name}"]["fps"]
        fp32_onnx = results.get(f"{family}_x2_fp32.onnx", {}).get("fps")
        for name, r in results.items():
            r["vs_opencv"] = round(r["fps"] / peer, 2) if peer else None  # a run too short for one frame: no ratio
            r["vs_fp32_onnx"] = round(r["fps"] / fp32_onnx, 2) if fp32_onnx else None
            r["meets_goal"] = r["fps"] >= goal
        rows.append({"family": family, "size": f"{size[0]}x{size[1]}", "goal_fps": goal, "threads": args.threads,
                     "results": results})
    path = save("stream_targets.json", {"machine": machine(), "seconds_per_run": args.seconds,
                                        "repeats": args.repeats, "rows": rows,
                                        "generated": time.strftime("%Y-%m-%d %H:%M")})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
