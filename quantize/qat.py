"""Quantization-aware fine-tuning: teach the FP32 weights to survive INT8 before export.

Post-training quantization of FSRCNN loses 0.3-0.7 dB: both per-channel int8 weights and
per-tensor 8-bit activations cost a little at every layer. Fine-tuning through the INT8
deployment graph with the quantizers the runtimes apply (per-channel symmetric int8 weights,
per-tensor 8-bit activations after every conv + ReLU, over the very ranges the runtimes' min-max
calibration will give them) recovers it. The result is an ordinary FSRCNN checkpoint, plus the
channel gains (balance_gains) its INT8 export must use.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_runtime.metrics import evaluate_set, load_eval_set
from training.data import DOWNSCALES, PatchSampler, set_folder
from training.model import FSRCNN, crop_border, mirror_pad, relu_layers
from quantize.calibration import CALIBRATION_SETS

INT8_FORM = "folded"  # training.model.relu_layers: the form both INT8 runtimes run
# The share of a hidden layer's positive calibration activations its INT8 range reaches (activation_ceiling).
CEILING_QUANTILE = 0.9999


class DeploymentRanges(nn.Module):
    """Per-tensor asymmetric 8-bit fake quantization over the range the runtimes' min-max calibration
    will give this tensor: min/max of the float graph on the very calibration patches the export uses,
    refreshed as the weights move. (An EMA of batch extremes missed the deployed ranges by up to 40%
    and the deployed INT8 model by 0.1 dB.)"""

    def __init__(self):
        super().__init__()
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float((self.hi - self.lo).clamp(min=1e-8) / 255)
        zero = int(round(-float(self.lo) / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def activation_ceiling(x: torch.Tensor, quantile: float = CEILING_QUANTILE) -> float:
    """The top of a hidden layer's INT8 range: the `quantile` quantile of its positive activations `x`,
    not their maximum. The few above it saturate (the exports clamp there, and the runtimes fold the clamp
    into the conv's output range), and every other activation gets a finer grid. Measured in QAT (Set5,
    simulation, from the shipped x2 checkpoints): FSRCNN-s x2 36.193 dB against 36.114 with the maximum,
    FSRCNN x2 36.861 against 36.841; 1 in 1,000 above it clipped too much (FSRCNN-s x2 36.116)."""
    positive = x[x > 0].flatten()
    if positive.numel() == 0:
        return 0.0
    return float(positive.kthvalue(max(1, round(quantile * positive.numel()))).values)


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 (-127..127), as ONNX Runtime and TFLite quantize conv weights."""
    scale = (w.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-12)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


def on_int8_grid(layers: list) -> list:
    """relu_layers' (weight, bias) with every weight snapped to its per-channel INT8 grid (fake_quant_weight),
    for the INT8 exports. QAT leaves some weights on a rounding boundary (its weights oscillate across
    them), and a runtime that computes w / scale a hair differently rounds those the other way: measured on
    fsrcnn-s_x2, the TFLite converter put 4 of 10 channels of one layer one step off the simulation, the
    output 0.3 grey levels brighter, and Set5 0.035 dB down. On the grid, every runtime gets the very integers
    QAT trained (the channel maxima, and so the scales, stay as they were)."""
    return [(fake_quant_weight(weight).detach(), bias) for weight, bias in layers]


def layer_outputs(layers: list, x: torch.Tensor, weights=lambda w: w, activations=None):
    """The output of each layer of relu_layers in turn (conv, ReLU but on the head), with
    `weights` applied to every weight and `activations[i]` to layer i's output when given."""
    for i, (weight, bias) in enumerate(layers):
        x = F.conv2d(x, weights(weight), bias, padding=weight.shape[-1] // 2)
        if i < len(layers) - 1:
            x = F.relu(x)
        if activations is not None:
            x = activations[i](x)
        yield x


@torch.no_grad()
def balance_gains(model: FSRCNN, lr_batch: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel gains for relu_layers that give every hidden channel of a layer the range of
    the widest one. Measured here: channel maxima of a layer spread up to 7x, and one per-tensor INT8
    scale then leaves the narrow channels a few dozen levels. A constant channel (the folded form's
    ones channel) keeps gain 1: amplified, the INT8 step of its head weights, set by the other
    channels, would multiply the constant at every pixel (most of a dB on Set5 x2 before QAT)."""
    layers, gains = relu_layers(model, INT8_FORM), []
    for x, _ in zip(layer_outputs(layers, lr_batch), layers[:-1]):
        widest, narrowest = x.amax(dim=(0, 2, 3)), x.amin(dim=(0, 2, 3))
        varies = (widest > 1e-3 * widest.max()) & (widest > narrowest)
        gains.append(torch.where(varies, widest.max() / widest, torch.ones_like(widest)))
    return gains


class QuantSim(nn.Module):
    """The INT8 deployment graph (conv + ReLU layers of relu_layers with channel gains `balance`, each
    clamped at its activation_ceiling for `quantile`, conv head + depth_to_space) with the runtimes'
    quantization simulated after every layer, computed from `model`'s parameters."""

    def __init__(self, model: FSRCNN, calibration: torch.Tensor, balance: list[torch.Tensor] | None = None,
                 quantile: float = CEILING_QUANTILE):
        super().__init__()
        self.model, self.calibration, self.balance, self.quantile = model, calibration, balance, quantile
        self.ranges = nn.ModuleList(DeploymentRanges() for _ in relu_layers(model, INT8_FORM))
        self.calibrate()

    @torch.no_grad()
    def calibrate(self) -> None:
        """Set every activation range as the runtimes' min-max calibration would, on the float graph they are
        given: its weights on their INT8 grid (on_int8_grid, as the exports write them), each hidden layer
        clamped at its ceiling (activation_ceiling, measured on the clamped graph before it). The head's is
        [0, 1], since the exports clamp it there (quantize.tflite_export.to_pixel_range). The calibration
        of a graph clamped at these ceilings finds these very ranges."""
        layers = relu_layers(self.model, INT8_FORM, self.balance)
        for i, (x, limits) in enumerate(zip(layer_outputs(layers, self.calibration, fake_quant_weight), self.ranges)):
            head = i == len(self.ranges) - 1
            limits.lo.fill_(0.0 if head else min(float(x.min()), 0.0))
            limits.hi.fill_(1.0 if head else activation_ceiling(x, self.quantile))
            if not head:
                x.clamp_(max=float(limits.hi))  # in place: the next layer reads the clamped activations

    def ceilings(self) -> list[float]:
        """Where the exports clamp each hidden layer (onnx_export.export_fp32, tflite_export.convert)."""
        return [float(limits.hi) for limits in self.ranges[:-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, x = layer_outputs(relu_layers(self.model, INT8_FORM, self.balance), x, fake_quant_weight, self.ranges)
        return F.pixel_shuffle(x, self.model.config.scale)


QAT_TARGETS = ("hr", "fp32")


def quant_aware_finetune(model: FSRCNN, data_dir: Path, calibration: np.ndarray, iters: int = 3000, lr: float = 1e-4,
                         batch: int = 32, lr_patch: int = 16, eval_every: int = 500, recalibrate_every: int = 50,
                         seed: int = 7, target: str = "hr", train_sets: tuple[str, ...] = CALIBRATION_SETS,
                         transpose: bool = False, downscales: tuple[float, ...] = DOWNSCALES,
                         desc: str = "qat") -> tuple[FSRCNN, float, list[torch.Tensor]]:
    """Fine-tune a copy of `model` under simulated INT8, with channel gains (balance_gains) measured on
    the FP32 model and activation ranges from the export's `calibration` patches; returns the
    best-on-Set5 copy, its simulated PSNR and the gains its INT8 export must use. `target` is what the
    simulated INT8 output is fitted to: the HR patches ("hr"), or the FP32 model's own output on the
    LR patches ("fp32", distillation: the INT8 model's job is to reproduce the FP32 one). `train_sets` are
    the folders its patches come from: those the checkpoint was last trained on, so that QAT does not pull
    the weights back towards other data; `transpose`, whether they come mirrored too, and `downscales`, at which
    sizes, as its training's did."""
    if target not in QAT_TARGETS:
        raise ValueError(f"target must be one of {QAT_TARGETS}, not {target!r}")
    scale = model.config.scale
    work = FSRCNN(model.config)
    work.load_state_dict(model.state_dict())
    calibration = torch.from_numpy(calibration)
    balance = balance_gains(model, calibration)
    sim = QuantSim(work, calibration, balance)
    border = model.config.border  # a padding-free model: patches with context, only the patch scored, images mirrored
    sampler = PatchSampler([set_folder(data_dir, n) for n in train_sets], scale, lr_patch, seed=seed, progress=False,
                           transpose=transpose, downscales=downscales, context=border)
    edge = border * scale
    val_pairs = load_eval_set(set_folder(data_dir, "Set5"), scale)
    optimizer = torch.optim.Adam([
        {"params": work.body.parameters(), "lr_mult": 1.0},
        {"params": work.deconv.parameters(), "lr_mult": 0.1},
    ], lr=lr)

    def validate() -> float:
        sim.calibrate()
        with torch.no_grad():
            psnr = evaluate_set(lambda y: crop_border(sim(mirror_pad(torch.from_numpy(y.astype(np.float32) / 255)[None, None],
                                                                     border)), edge)[0, 0].numpy() * 255, val_pairs, scale)["psnr"]
        return psnr

    best_state, best = {k: v.clone() for k, v in work.state_dict().items()}, validate()
    for step in tqdm(range(1, iters + 1), desc=desc, unit="it", mininterval=2):
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"] * 0.5 * (1 + math.cos(math.pi * step / iters))
        if step % recalibrate_every == 0:
            sim.calibrate()
        x, y = sampler.batch(batch)
        if target == "fp32":
            with torch.no_grad():
                y = crop_border(model(x), edge)
        loss = F.mse_loss(crop_border(sim(x), edge), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == iters:
            psnr = validate()
            if psnr > best:
                best, best_state = psnr, {k: v.clone() for k, v in work.state_dict().items()}
    work.load_state_dict(best_state)
    return work.eval(), best, balance
