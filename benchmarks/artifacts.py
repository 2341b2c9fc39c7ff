"""Model-only speed of every shipped artifact (1 and 2 threads, 320x240 and 640x480) as ratios to
FP32 ONNX in the same run, plus the FP32 ONNX exported with the other head form (9x9 deconvolution
vs conv + depth_to_space), the measurement that picks the shipped form.

    python benchmarks/artifacts.py           # writes results/artifact_speed.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save, time_model  # noqa: E402
from edge_runtime.backends import load_upscaler  # noqa: E402
from edge_runtime.models import shipped  # noqa: E402

SIZES = [(320, 240), (640, 480)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--no-deconv", action="store_true", help="skip the deconvolution-head comparison (needs torch)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ident in sorted({a.path.name.rsplit("_", 1)[0] for a in shipped() if a.scale in args.scales}):
            paths = {a.name.split("_", 2)[2]: a.path for a in shipped() if a.name.startswith(ident + "_")}
            if not args.no_deconv:
                from quantize.onnx_export import export_fp32
                from training.evaluate import WEIGHTS_DIR
                from training.model import load_weights

                shipped_head = json.loads(paths["fp32.onnx"].with_name(paths["fp32.onnx"].name + ".json").read_text())
                other = "subpixel" if shipped_head["architecture"]["head"] == "deconv" else "deconv"
                paths[f"fp32.onnx ({other} head)"] = export_fp32(load_weights(WEIGHTS_DIR / f"{ident}.pt"),
                                                                 Path(tmp) / f"{ident}_{other}.onnx", other)
            for size in SIZES:
                for threads in (1, 2):
                    fps = {name: time_model(load_upscaler(path, threads).run, size, args.seconds)
                           for name, path in sorted(paths.items())}
                    base = fps.get("fp32.onnx")
                    row = {"model": ident, "size": f"{size[0]}x{size[1]}", "threads": threads,
                           "fps": {k: round(v, 2) for k, v in fps.items()},
                           "vs_fp32_onnx": {k: round(v / base, 2) for k, v in fps.items()} if base else {}}
                    rows.append(row)
                    print(ident, row["size"], f"t{threads}", "  ".join(f"{k} {v:.1f}" for k, v in row["fps"].items()), flush=True)
    path = save("artifact_speed.json", {"machine": machine(), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
