"""What `--ensemble` buys and costs: Set5 and Set14 PSNR of shipped artifacts alone and as an x8 self-ensemble
(edge_runtime/ensemble.py), through their real runtimes, and the ensemble's time over the model alone's on the
same images in the same run.

    python benchmarks/self_ensemble.py       # writes results/self_ensemble.json (data from $EDGE_SR_DATA)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save  # noqa: E402
from edge_runtime.ensemble import SelfEnsemble  # noqa: E402
from edge_runtime.metrics import evaluate_set, load_eval_set  # noqa: E402
from edge_runtime.models import MODELS_DIR, open_model, parse_name  # noqa: E402

# The form a family runs as unless --precision or --backend says otherwise (INT8 LiteRT), and FP32 ONNX.
MODELS = [f"{family}_x{scale}_{form}" for family in ("fsrcnn", "fsrcnn-s") for scale in (2, 3, 4)
          for form in ("int8.tflite", "fp32.onnx")]


def timed_psnr(upscale, pairs, scale: int) -> tuple[float, float]:
    """(PSNR over `pairs`, seconds spent in `upscale` alone: not in the scoring, which outweighs a small model)."""
    spent = 0.0

    def timed(lr):
        nonlocal spent
        start = time.perf_counter()
        out = upscale(lr)
        spent += time.perf_counter() - start
        return out

    return evaluate_set(timed, pairs, scale)["psnr"], spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--data-dir", default=os.environ.get("EDGE_SR_DATA"), help="default: $EDGE_SR_DATA")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    data_dir = Path(args.data_dir or "")
    if not args.data_dir or not (data_dir / "Set5").is_dir() or not (data_dir / "Set14").is_dir():
        print(f"self_ensemble.py: error: no Set5/ and Set14/ in {args.data_dir!r}: pass --data-dir or set EDGE_SR_DATA",
              file=sys.stderr)
        return 2
    rows = []
    for name in args.models:
        artifact = parse_name(MODELS_DIR / name)
        if artifact is None or not artifact.path.is_file():
            print(f"self_ensemble.py: error: no shipped model {name}", file=sys.stderr)
            return 2
        model = open_model(artifact.path, artifact.scale, args.threads, artifact.backend)
        row = {"model": name, "scale": artifact.scale}
        seconds = {"alone": 0.0, "ensemble": 0.0}
        for set_name in ("Set5", "Set14"):
            pairs = load_eval_set(data_dir / set_name, artifact.scale)
            alone, seconds_alone = timed_psnr(model.run, pairs, artifact.scale)
            ensemble, seconds_ensemble = timed_psnr(SelfEnsemble(model).run, pairs, artifact.scale)
            row[set_name] = {"alone": round(alone, 3), "ensemble": round(ensemble, 3)}
            seconds["alone"] += seconds_alone
            seconds["ensemble"] += seconds_ensemble
        row["time_ratio"] = round(seconds["ensemble"] / seconds["alone"], 2)
        rows.append(row)
        print(f"{name:24s} Set5 {row['Set5']['alone']:.3f} -> {row['Set5']['ensemble']:.3f}  Set14 "
              f"{row['Set14']['alone']:.3f} -> {row['Set14']['ensemble']:.3f}  {row['time_ratio']:.1f}x the time",
              flush=True)
    path = save("self_ensemble.json", {"machine": machine(), "threads": args.threads, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
