"""Why the INT8 TFLite artifacts use the folded-ReLU form with a superpixel head and the first conv on rows:
model-only speed of one x2 checkpoint converted to INT8 with native PReLU ops, in the split-ReLU form, in the
folded-ReLU form, in that with its head on 2x2 superpixels (quantize.rewrites.superpixel_layers) and
with its first conv on rows as well (rows_as_channels), as ratios to its FP32 conversion in the same run,
with the executed MACs of each form and the ops LiteRT runs.

    python benchmarks/int8_forms.py          # writes results/int8_forms.json (needs the [quantize] extra)
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (calibration_dir, checkpoints_with_calibration, conversion_parser, machine,  # noqa: E402
                               save, time_model)
from edge_runtime.backends import LiteRTUpscaler  # noqa: E402
from quantize import tflite_export  # noqa: E402
from quantize.card import executed_macs_per_lr_pixel  # noqa: E402
from quantize.onnx_export import deployable  # noqa: E402

# (label, precision, tf form, its LiteRT rewrites, head whose MACs that form executes)
FORMS = [("fp32 prelu", "fp32", "prelu", (), "subpixel"), ("int8 prelu", "int8", "prelu", (), "subpixel"),
         ("int8 split-relu", "int8", "split-relu", (), "split-relu"),
         ("int8 folded-relu", "int8", "folded-relu", (), "folded-relu"),
         ("int8 folded-relu, superpixel head", "int8", "folded-relu", ("superpixel",), "folded-relu"),
         ("int8 folded-relu, superpixel head, first conv on rows", "int8", "folded-relu", ("superpixel", "rows"),
          "folded-relu")]


def main() -> int:
    args = conversion_parser(__doc__, ["fsrcnn-s_x2", "fsrcnn_x2"], "640x480", 3.0).parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    data_dir = calibration_dir(args, "int8_forms")
    if data_dir is None:
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ident, model, patches in checkpoints_with_calibration(args.models, data_dir):
            row = {"model": ident, "size": args.size, "threads": args.threads, "forms": {}}
            for i, (label, precision, form, rewrites, head) in enumerate(FORMS):
                path = Path(tmp) / f"{ident}_form{i}.tflite"
                tflite_export.convert(model, path, precision, patches if precision == "int8" else None, form=form,
                                      rewrites=rewrites)
                fps = time_model(LiteRTUpscaler(path, threads=args.threads).run, size, args.seconds)
                ops = [o["op"] for o in tflite_export.op_report(path)["ops"]]
                row["forms"][label] = {"fps": round(fps, 2), "executed_macs_per_lr_pixel":
                                       executed_macs_per_lr_pixel(deployable(model, head), rewrites),
                                       "xnnpack_partitions": ops.count("DELEGATE"),
                                       "op_types": sorted(set(ops) - {"DELEGATE"})}
            base = row["forms"]["fp32 prelu"]["fps"]
            for entry in row["forms"].values():
                entry["vs_fp32"] = round(entry["fps"] / base, 2)
            rows.append(row)
            print(ident, "  ".join(f"{k}: {v['fps']:.1f} fps ({v['vs_fp32']}x)" for k, v in row["forms"].items()), flush=True)
    path = save("int8_forms.json", {"machine": machine(), "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
