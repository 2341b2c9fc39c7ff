"""Where a shipped model's INT8 loss goes, in the QAT simulation (quantize.qat.QuantSim), which matches both
runtimes to a few hundredths of a dB: Set5 PSNR of the QAT copy with nothing quantized, then the change
from quantizing its weights alone, each layer's activations alone, and everything.

    python scripts/int8_loss_breakdown.py fsrcnn_x2 fsrcnn-s_x2 --data-dir ../shared/datasets

The QAT copy has learned to live with INT8 weights, so quantizing them alone can raise its PSNR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_runtime.metrics import evaluate_set, load_eval_set  # noqa: E402
from quantize.build import CALIBRATION  # noqa: E402
from quantize.calibration import calibration_patches  # noqa: E402
from quantize.qat import INT8_FORM, QuantSim, fake_quant_weight, layer_outputs  # noqa: E402
from training.data import DataError, resolve_data_dir, set_folder  # noqa: E402
from training.evaluate import WEIGHTS_DIR  # noqa: E402
from training.model import CheckpointError, crop_border, load_weights, mirror_pad, relu_layers  # noqa: E402


def breakdown(ident: str, data_dir: Path) -> tuple[float, list[tuple[str, float]]]:
    """Set5 PSNR of the QAT copy in float, and the change (dB) each quantization alone makes to it."""
    qat = load_weights(WEIGHTS_DIR / f"{ident}_qat.pt")
    balance = [torch.tensor(g) for g in json.loads((WEIGHTS_DIR / f"{ident}_qat.json").read_text())["balance"]]
    scale = qat.config.scale
    calibration = torch.from_numpy(calibration_patches(data_dir, scale, CALIBRATION["patches"], CALIBRATION["lr_patch"]))
    pairs = load_eval_set(set_folder(data_dir, "Set5"), scale)
    ranges = list(QuantSim(qat, calibration, balance).ranges)
    layers = relu_layers(qat, INT8_FORM, balance)

    def set5(weights=lambda w: w, quantized=()) -> float:
        activations = [r if i in quantized else torch.nn.Identity() for i, r in enumerate(ranges)]

        def upscale(lr: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                x = mirror_pad(torch.from_numpy(lr.astype(np.float32) / 255)[None, None], qat.config.border)
                *_, out = layer_outputs(layers, x, weights, activations)
                out = crop_border(F.pixel_shuffle(out, scale), qat.config.border * scale)  # as model.upscale_image
                return out[0, 0].numpy() * 255

        return evaluate_set(upscale, pairs, scale)["psnr"]

    float_psnr = set5()
    rows = [("weights", set5(fake_quant_weight) - float_psnr)]
    for i, r in enumerate(ranges):
        name = "output (pixel range)" if i == len(ranges) - 1 else f"activations of layer {i}"
        rows.append((f"{name} [{float(r.lo):.2f}, {float(r.hi):.2f}]", set5(quantized={i}) - float_psnr))
    rows.append(("everything", set5(fake_quant_weight, set(range(len(ranges)))) - float_psnr))
    return float_psnr, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model ids, e.g. fsrcnn_x2")
    p.add_argument("--data-dir", help="datasets folder (default: $EDGE_SR_DATA)")
    args = p.parse_args(argv)
    try:
        data_dir = resolve_data_dir(args.data_dir)
        for ident in args.models:
            float_psnr, rows = breakdown(ident, data_dir)
            print(f"{ident}: QAT copy in float {float_psnr:.3f} dB on Set5; change from quantizing, alone:")
            for name, change in rows:
                print(f"  {name:<44} {change:+.3f}")
    except (DataError, CheckpointError, FileNotFoundError) as err:
        print(f"int8_loss_breakdown: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
