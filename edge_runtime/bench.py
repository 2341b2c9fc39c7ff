"""`edge-sr bench`: on this device, fps of every shipped model x input size x threads (end to end:
frames in -> frames out through the stream pipeline) and PSNR/SSIM against bicubic; OpenCV
dnn_superres in the same run when its models are given. Writes report.json and report.html.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from edge_runtime import __version__
from edge_runtime.cpu import device_id
from edge_runtime.cli import OneLineParser, parse_size, positive
from edge_runtime.errors import BackendError, CliError
from edge_runtime.files import check_writable, write_atomic, write_json
from edge_runtime.demo import DemoSource
from edge_runtime.metrics import bicubic_upscale, degrade, evaluate_set, load_eval_set
from edge_runtime.models import default_workers, open_workers, shipped
from edge_runtime.opencv_peer import OpenCVSuperRes, peer_models
from edge_runtime.pipeline import Pipeline
from edge_runtime.report_html import render_html
from edge_runtime.stats import StreamStats

DEFAULT_SIZES = ("320x240", "640x360", "640x480")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="edge-sr bench", description=__doc__)
    p.add_argument("--data-dir", help="folder with the evaluation sets (default: the demo scene)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"],
                   help="sub-folders of --data-dir to score (default: Set5 Set14)")
    p.add_argument("--scales", nargs="+", type=int, choices=(2, 3, 4), default=[2, 3, 4],
                   help="upscaling factors (default: 2 3 4)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES],
                   help=f"LR frame sizes WxH to stream (default: {' '.join(DEFAULT_SIZES)})")
    p.add_argument("--threads", nargs="+", type=positive(int), default=sorted({1, os.cpu_count() or 1}),
                   help="thread counts to stream with (default: 1 and all cores)")
    p.add_argument("--models", nargs="+", help="artifact names to include (default: all shipped)")
    p.add_argument("--opencv-models", help="folder with OpenCV dnn_superres .pb models to compare")
    p.add_argument("--seconds", type=positive(float), default=2.0,
                   help="stream time per configuration (default: 2)")
    p.add_argument("--target-fps", type=positive(float), default=24.0,
                   help="the throughput each configuration is checked against (default: 24)")
    p.add_argument("--out", default="reports/bench", help="folder for report.json and report.html (default: reports/bench)")
    return p


def quality_pairs(args, scale: int) -> dict:
    """{set name: [(name, hr, lr)]} from --data-dir, else a few frames of the demo scene."""
    if args.data_dir:
        folder = Path(args.data_dir)
        found = {name: folder / name for name in args.sets if (folder / name).is_dir()}
        if not found:  # a plain folder of images is one set
            found = {folder.name: folder}
        try:
            return {name: load_eval_set(path, scale) for name, path in found.items()}
        except FileNotFoundError as err:
            raise CliError(str(err)) from None
    demo = DemoSource((320, 240), scale)
    pairs = []
    for i in range(3):
        demo.index = i * 40
        pairs.append((f"demo{i}", *degrade(demo.read().truth_y, scale)))
    return {"demo": pairs}


def stream_fps(upscalers: list, size, scale: int, seconds: float, target: float, demos: dict) -> dict:
    key = (size, scale)
    if key not in demos:
        demos[key] = DemoSource(size, scale)
    stats = StreamStats(target)
    summary = Pipeline(demos[key], upscalers, scale, [], stats, seconds=seconds, status=None, live_psnr=False).run()
    return {"fps": summary["fps"], "verdict": summary["verdict"], "frames": summary["frames"],
            "stage_ms": {k: v.get("mean") for k, v in summary["stage_ms"].items()},
            "latency_p50_ms": summary["latency_ms"].get("p50")}


def machine() -> dict:
    return {"device": device_id(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}


def bench_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    artifacts = [a for a in shipped() if a.scale in args.scales and (not args.models or a.name in args.models)]
    if not artifacts:
        raise CliError("no shipped model matches --scales/--models")
    if args.opencv_models:  # a wrong folder would otherwise just leave OpenCV out of the report
        folder = Path(args.opencv_models)
        if not folder.is_dir():
            raise CliError(f"--opencv-models folder not found: {folder}")
        if not any(peer_models(folder, scale) for scale in args.scales):
            raise CliError(f"no OpenCV dnn_superres models for x{'/x'.join(map(str, args.scales))} in {folder} "
                           "(FSRCNN_x2.pb, FSRCNN-small_x2.pb and so on)")
    check_writable(args.out)  # before minutes of measuring, not after them
    entries, demos, rows = [], {}, []
    started = time.time()
    for scale in args.scales:
        pairs = quality_pairs(args, scale)
        contenders = [(a.name, a.family, a.precision, a.backend, a.path, "edge-sr") for a in artifacts if a.scale == scale]
        if args.opencv_models:
            contenders += [(label, label, "fp32", "opencv-dnn", path, "opencv")
                           for label, path in peer_models(Path(args.opencv_models), scale).items()]
        bicubic = {name: evaluate_set(lambda lr: bicubic_upscale(lr, scale), p, scale) for name, p in pairs.items()}
        for name, family, precision, backend, path, kind in contenders:
            try:
                make = ((lambda t: [OpenCVSuperRes(path, t)]) if kind == "opencv" else
                        (lambda t: open_workers(path, scale, t, default_workers(t), backend)))
                quality_runner = make(max(args.threads))[0]
            except BackendError as err:
                print(f"skip {name}: {err}")
                continue
            quality = {}
            for set_name, set_pairs in pairs.items():
                scores = evaluate_set(quality_runner.run, set_pairs, scale)
                quality[set_name] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                                     "bicubic_psnr": round(bicubic[set_name]["psnr"], 3),
                                     "bicubic_ssim": round(bicubic[set_name]["ssim"], 4)}
            speed = []
            for size in args.sizes:
                for threads in args.threads:
                    result = stream_fps(make(threads), size, scale, args.seconds, args.target_fps, demos)
                    speed.append({"size": f"{size[0]}x{size[1]}", "threads": threads, **result})
                    rows.append(f"{result['verdict']}  {name:28s} {size[0]}x{size[1]:<4d} t{threads}  "
                                f"{result['fps']:6.1f} fps  PSNR {next(iter(quality.values()))['psnr']:.2f}")
                    print(rows[-1], flush=True)
            entries.append({"name": name, "kind": kind, "family": family, "scale": scale, "precision": precision,
                            "backend": backend, "quality": quality, "speed": speed})
    report = {"edge_sr": __version__, "machine": machine(), "target_fps": args.target_fps,
              "seconds_per_config": args.seconds, "quality_source": args.data_dir or "demo scene",
              "elapsed_s": round(time.time() - started, 1), "results": entries}
    out = Path(args.out)
    write_json(out / "report.json", report)
    html = write_atomic(out / "report.html", render_html(report))
    passed = sum(r.startswith("PASS") for r in rows)
    print(f"{passed}/{len(rows)} configurations hold {args.target_fps:g} fps; report: {out / 'report.json'}, {html}")
    return 0

