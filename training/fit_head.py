"""Refit a trained model's 9x9 deconvolution in closed form.

Given the body, the head is linear in the body's features, so the head with the least MSE on the
training images is one least-squares solve. Training reaches it only approximately: it sees 16x16
patches whose zero-padded borders bend the head, the deconvolution learns at 0.1x the rate, and
Adam's steps are noisy. This fit sees whole augmented images (every DOWNSCALES factor x 4
rotations), as evaluation does, and keeps the result only if the validation set scores higher.

For FP32 deployments only: the least-squares head leans on small differences between nearly collinear
features, which INT8 activations do not keep. Quantization-aware fine-tuning from a refitted
checkpoint scored 0.12 (fsrcnn-s_x2) and 0.36 dB (fsrcnn-s_x4) under the same from the shipped one
(TRAINING.md), so the shipped weights are not refitted.

    python -m training.fit_head training/weights/fsrcnn_x3.pt --data-dir ../shared/datasets
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_runtime.files import OutputError, check_writable, sha256
from edge_runtime.metrics import evaluate_set, load_eval_set
from training.data import DataError, augmented_pairs, resolve_data_dir, set_folder
from training.evaluate import torch_upscaler
from training.model import (DECONV_KERNEL, FSRCNN, CheckpointError, crop_border, load_weights, mirror_pad, save_weights,
                            subpixel_taps)
from training.train import TrainConfig, use_threads

TURNS = 4  # rotations by 90 degrees, as training's augmentation
RIDGE = 1e-7  # relative to the mean feature energy: keeps the solve well posed, moves nothing measurable
KEEP = 0.25  # share of LR pixels the fit reads (seeded): thousands of samples per unknown, 4x faster than all
MIN_GAIN_DB = 0.001  # the refitted head must beat the checkpoint's by this (the figures' last digit)


class HeadFit:
    """Normal equations of the head's least squares, accumulated one (LR, HR) image pair at a time.

    The head runs as a conv to scale^2 phases (`deconv_to_subpixel`); each phase reads only its own
    taps of the 9x9 kernel, so each phase has its own unknowns, and all share the one bias.
    """

    def __init__(self, model: FSRCNN, keep: float = KEEP, seed: int = 0):
        self.model, self.scale, d = model, model.config.scale, model.config.d
        self.keep, self.generator = keep, torch.Generator().manual_seed(seed)
        taps = subpixel_taps(self.scale, model.config.deconv_pad)  # phase x k x k -> flat 9x9 tap, or 81 where none
        self.k = taps.shape[-1]
        zero = DECONV_KERNEL * DECONV_KERNEL
        flat = taps.reshape(len(taps), -1)
        used = [(phase != zero).nonzero().squeeze(1) for phase in flat]
        self.kernel_taps = [phase[u] for phase, u in zip(flat, used)]  # 9x9 index of each unknown (per channel)
        # rows of F.unfold (channel-major, then k x k) that each phase reads
        self.rows = [(torch.arange(d).view(-1, 1) * self.k * self.k + u.view(1, -1)).reshape(-1) for u in used]
        # Every phase reads the same LR columns: one Gram matrix over the whole k x k window serves all.
        size = d * self.k * self.k
        self.gram = torch.zeros(size, size, dtype=torch.float64)
        self.feature_sum = torch.zeros(size, dtype=torch.float64)
        self.cross = torch.zeros(len(self.rows), size, dtype=torch.float64)  # per phase
        self.target_sum, self.count = 0.0, 0

    def add(self, lr: np.ndarray, hr: np.ndarray) -> None:
        """One pair (0..255): a random `keep` share of its LR pixels, less the outer ring (the evaluation
        shaves it). A padding-free model's features are those of the image mirrored by its border, as it
        meets images (`upscale_image`); the head reads them at the image's own pixels."""
        s, border = self.scale, self.model.config.border
        with torch.no_grad():
            features = self.model.body(mirror_pad(torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None], border))
        h, w = lr.shape
        inner = torch.zeros(h, w, dtype=torch.bool)
        inner[1:-1, 1:-1] = True
        inner = (inner & (torch.rand(h, w, generator=self.generator) < self.keep)).reshape(-1)
        columns = F.unfold(features, self.k, padding=self.k // 2)[0]
        rows = len(columns)
        columns = crop_border(columns.view(rows, h + 2 * border, w + 2 * border), border).reshape(rows, -1)
        # float64 from here: the features are nearly collinear, and a float32 Gram matrix loses the fit
        columns = columns[:, inner].double()
        target = torch.from_numpy(np.asarray(hr, dtype=np.float64) / 255.0)
        self.gram += columns @ columns.T
        self.feature_sum += columns.sum(1)
        for phase in range(len(self.rows)):
            ry, rx = divmod(phase, s)
            y = target[ry::s, rx::s].reshape(-1)[inner]
            self.cross[phase] += columns @ y
            self.target_sum += float(y.sum())
        self.count += int(inner.sum())

    def solve(self) -> tuple[torch.Tensor, float]:
        """(deconvolution weight d x 1 x 9 x 9, bias) minimising the squared error over every pair added."""
        sizes = [len(r) for r in self.rows]
        n = sum(sizes) + 1
        a = torch.zeros(n, n, dtype=torch.float64)
        b = torch.zeros(n, dtype=torch.float64)
        ridge = RIDGE * self.gram.diagonal().mean()
        start = 0
        for phase, rows in enumerate(self.rows):
            end = start + len(rows)
            a[start:end, start:end] = self.gram[rows][:, rows] + ridge * torch.eye(len(rows), dtype=torch.float64)
            a[start:end, -1] = a[-1, start:end] = self.feature_sum[rows]
            b[start:end] = self.cross[phase, rows]
            start = end
        a[-1, -1] = self.count * len(self.rows)
        b[-1] = self.target_sum
        solution = torch.linalg.solve(a, b)
        d = self.model.config.d
        weight = torch.zeros(d, DECONV_KERNEL * DECONV_KERNEL, dtype=torch.float64)
        start = 0
        for taps, size in zip(self.kernel_taps, sizes):
            weight[:, taps] = solution[start:start + size].view(d, -1)
            start += size
        return weight.view(d, 1, DECONV_KERNEL, DECONV_KERNEL).float(), float(solution[-1])


def fit_head(model: FSRCNN, pairs, keep: float = KEEP) -> None:
    """Set the model's deconvolution to the least-squares head over `pairs` of (HR, LR)."""
    fit = HeadFit(model.eval(), keep)
    for hr, lr in pairs:
        fit.add(lr, hr)
    weight, bias = fit.solve()
    with torch.no_grad():
        model.deconv.weight.copy_(weight)
        model.deconv.bias.fill_(bias)


def rotated(pairs):
    for hr, lr in pairs:
        for turns in range(TURNS):
            yield np.ascontiguousarray(np.rot90(hr, turns)), np.ascontiguousarray(np.rot90(lr, turns))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fit_head", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="an edge-sr checkpoint (.pt with its .json)")
    p.add_argument("--data-dir", help="the data folder (default: $EDGE_SR_DATA)")
    p.add_argument("--train-sets", nargs="+", help="the images the head is fitted on (default: the sets the checkpoint "
                                                   "was trained on)")
    p.add_argument("--val-set", default="Set5", help="the fit is kept only if this set scores higher (default: Set5)")
    p.add_argument("--keep", type=float, default=KEEP, help=f"share of LR pixels the fit reads (default {KEEP})")
    p.add_argument("--out", help="where to write the refitted checkpoint (default: over the input)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if not 0 < args.keep <= 1:
        p.error(f"--keep must be in (0, 1], not {args.keep}")
    use_threads(p, args.threads)
    try:
        source = Path(args.checkpoint)
        model = load_weights(source)
        meta = json.loads(source.with_suffix(".json").read_text())
        digest = sha256(source)  # before the fit may overwrite it
        data_dir = resolve_data_dir(args.data_dir)
        train_sets = args.train_sets or meta.get("train_sets") or TrainConfig().train_sets
        folders = [set_folder(data_dir, name) for name in train_sets]
        val_pairs = load_eval_set(set_folder(data_dir, args.val_set), model.config.scale)
        check_writable(Path(args.out or source).parent)
    except (DataError, CheckpointError, OutputError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    scale = model.config.scale
    before = evaluate_set(torch_upscaler(model), val_pairs, scale)["psnr"]
    try:
        fit_head(model, rotated(augmented_pairs(folders, scale, desc="fitting the head on")), args.keep)
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; the checkpoint is unchanged", file=sys.stderr)
        return 130
    after = evaluate_set(torch_upscaler(model), val_pairs, scale)["psnr"]
    print(f"{source.stem}: {args.val_set} {before:.3f} -> {after:.3f} dB with the refitted head")
    if after < before + MIN_GAIN_DB:
        print("kept the checkpoint as it was: the refitted head does not score higher")
        return 0
    out = Path(args.out) if args.out else source
    meta.pop("config", None)
    meta["head_fit"] = {"from_sha256": digest, "train_sets": train_sets, "turns": TURNS, "keep": args.keep, "val_set": args.val_set,
                        "val_psnr_before": round(before, 4), "val_psnr_after": round(after, 4)}
    meta.update(val_set=args.val_set, val_psnr=round(after, 4))
    save_weights(model, out, meta)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
