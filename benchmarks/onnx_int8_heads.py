"""Why ONNX Runtime's INT8 artifacts run their heads on superpixels: model-only speed of each
checkpoint's INT8 folded-ReLU form (ONNX Runtime static QDQ) with its head as it is (s*s output channels)
and on 2x2 superpixels (quantize.onnx_export.ReLUGraph, 4x the outputs), as ratios to its FP32 ONNX
export in the same run. Both INT8 forms compute the very same sums; quantize.rewrites.superpixel_layers
takes the scales where the superpixel head wins.

    python benchmarks/onnx_int8_heads.py     # writes results/onnx_int8_heads.json (needs the [quantize] extra)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (calibration_dir, checkpoints_with_calibration, conversion_parser, machine,  # noqa: E402
                               save, time_model)
from edge_runtime.backends import OnnxUpscaler  # noqa: E402
from quantize import onnx_export  # noqa: E402
from quantize.build import FP32_HEAD, INT8_HEAD  # noqa: E402
from quantize.qat import balance_gains  # noqa: E402
from training.model import PRESETS, SCALES, model_id  # noqa: E402


def main() -> int:
    p = conversion_parser(__doc__, [model_id(name, scale) for name in PRESETS for scale in SCALES], "640x360", 2.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    data_dir = calibration_dir(args, "onnx_int8_heads")
    if data_dir is None:
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ident, model, patches in checkpoints_with_calibration(args.models, data_dir):
            balance = balance_gains(model, torch.from_numpy(patches))
            paths = {"fp32": onnx_export.export_fp32(model, Path(tmp) / f"{ident}_fp32.onnx", FP32_HEAD["onnx"])}
            for label, superpixel in (("int8", False), ("int8, superpixel head", True)):
                fp32 = onnx_export.export_fp32(model, Path(tmp) / "int8_source.onnx", INT8_HEAD, balance, superpixel,
                                               pixel_range=True)  # as quantize.build exports them
                paths[label] = onnx_export.quantize_int8(fp32, Path(tmp) / f"{ident}_{superpixel}.onnx", patches)
            runs = {label: (OnnxUpscaler(path, args.threads).run, []) for label, path in paths.items()}
            for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every form
                for run, fps in runs.values():
                    fps.append(time_model(run, size, args.seconds))
            base = statistics.median(runs["fp32"][1])
            row = {"model": ident, "size": args.size, "threads": args.threads,
                   "forms": {label: {"fps": round(statistics.median(fps), 2), "runs": [round(v, 2) for v in fps],
                                     "vs_fp32": round(statistics.median(fps) / base, 2)}
                             for label, (_, fps) in runs.items()}}
            rows.append(row)
            print(ident, "  ".join(f"{k}: {v['fps']:.1f} fps ({v['vs_fp32']}x)" for k, v in row["forms"].items()), flush=True)
    path = save("onnx_int8_heads.json", {"machine": machine(), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
