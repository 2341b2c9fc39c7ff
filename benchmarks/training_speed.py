"""Training throughput (LR pixels/s) of the two exactly equivalent heads, and the paper's
FSRCNN-vs-SRCNN inference speed-up, in PyTorch on this CPU.

    python benchmarks/training_speed.py      # writes results/training_speed.json
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, save  # noqa: E402
from training.model import SRCNN, FSRCNN, preset  # noqa: E402
from training.train import LR_PATCH  # noqa: E402


def train_pixels_per_second(model: FSRCNN, subpixel: bool, scale: int, batch: int = 64, steps: int = 12) -> float:
    model.subpixel_head = subpixel
    optimizer = torch.optim.Adam(model.parameters())
    p = LR_PATCH[scale]
    x, y = torch.rand(batch, 1, p, p), torch.rand(batch, 1, p * scale, p * scale)
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch * p * p * steps / (time.perf_counter() - start)


def inference_seconds(module, x, runs: int = 5) -> float:
    with torch.no_grad():
        module(x)
        start = time.perf_counter()
        for _ in range(runs):
            module(x)
    return (time.perf_counter() - start) / runs


def main() -> int:
    torch.set_num_threads(2)
    rows = []
    for name in ("fsrcnn", "fsrcnn-s"):
        for scale in (2, 3, 4):
            model = FSRCNN(preset(name, scale))
            deconv, sub = train_pixels_per_second(model, False, scale), train_pixels_per_second(model, True, scale)
            rows.append({"model": f"{name}_x{scale}", "deconv_lr_px_s": round(deconv), "subpixel_lr_px_s": round(sub),
                         "subpixel_speedup": round(sub / deconv, 2)})
            print(rows[-1], flush=True)
    lr = torch.rand(1, 1, 240, 320)
    speedup = {}
    for scale in (2, 3, 4):
        srcnn = inference_seconds(SRCNN().eval(), torch.rand(1, 1, 240 * scale, 320 * scale))
        for name in ("fsrcnn", "fsrcnn-s"):
            fsrcnn = inference_seconds(FSRCNN(preset(name, scale)).eval(), lr)
            speedup[f"{name}_x{scale}"] = round(srcnn / fsrcnn, 1)
    print("FSRCNN speed-up over SRCNN 9-1-5 (same 320x240 LR input):", speedup)
    save("training_speed.json", {"machine": machine(), "threads": 2, "training": rows, "speedup_over_srcnn": speedup})
    return 0


if __name__ == "__main__":
    sys.exit(main())
