"""Exact rewrites of the INT8 graphs for the INT8 runtimes' kernels: the same sums, faster shapes.

Both runtimes' INT8 convolutions are slow with few output channels (the x2 head has 4), and XNNPACK's
kernels pad each tap's input channels to a multiple of 8 (the first conv has 1). The exporters
(tflite_export, onnx_export) apply these to the INT8 ReLU forms of training.model.relu_layers.
"""
from __future__ import annotations

import numpy as np

SUPERPIXEL = 2  # a superpixel head runs once per 2x2 block of LR pixels
# The LiteRT INT8 artifacts' rewrites: the first conv on rows (rows_as_channels), the convs of
# superpixel_layers on 2x2 superpixels (superpixel_conv). ONNX Runtime's get the superpixel head only.
REWRITES = ("rows", "superpixel")
ONNX_REWRITES = ("superpixel",)


def superpixel_layers(scale: int, runtime: str = "litert") -> tuple[int, ...]:
    """Which convs of an INT8 form run on superpixels, by measurement (model-only, 2 threads):
    - LiteRT: the head at x2 only, where it has 4 outputs: 1.2x to 1.4x (benchmarks/int8_forms.py). The
      first conv on superpixels lost 15% to 35% at every scale: its 2d outputs become 8d, and
      depth_to_space moves the widest tensor (it runs on rows instead: rows_as_channels). The x3 and x4
      heads already emit 9 and 16 channels.
    - ONNX Runtime: the head at every scale, its QLinearConv with 4, 9 or 16 outputs being slow: in the
      smallest window that holds it (superpixel_window), the INT8 models ran 2.0x to 2.1x as fast at x2,
      1.25x at x3 and 1.1x at x4 (benchmarks/onnx_int8_heads.py, an AVX512-VNNI EPYC; 1.7x to 1.8x at x2
      and 1.4x to 1.5x at x3 and x4 on an Intel Xeon). In a 6x6 window, the x4 head had run 15% slower."""
    heads = {"litert": (2,), "onnxruntime": (2, 3, 4)}[runtime]
    return (-1,) if scale in heads else ()


def rows_as_channels(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 'same'-padded k x k conv of a one-channel input (HWIO `kernel`, k x k x 1 x C) as two convs: a
    1 x k conv with one-hot weights that copies each pixel's k row neighbours into k channels, then a
    k x 1 conv over those channels. Returns both HWIO kernels.

    Why: XNNPACK's INT8 convs pad each tap's input channels to a multiple of 8, so a 5x5 conv of one
    channel does 8x its MACs; on rows the 25 taps are 5 taps of 5 channels. Exact in INT8 as in float:
    a one-hot channel's weight quantizes to exactly 127 with scale 1/127, the copies' calibrated range
    is the input's, so they hold the input's very int8 values, and the k x 1 conv's per-channel weights
    are the k x k conv's weights, reordered."""
    k, width, in_ch, out_ch = kernel.shape
    if in_ch != 1 or k != width:
        raise ValueError(f"rows_as_channels takes a square conv of one input channel, not {kernel.shape}")
    return np.eye(k, dtype=np.float32).reshape(1, k, 1, k), kernel.reshape(k, 1, k, out_ch)


def superpixel_window(k: int) -> int:
    """The side of superpixel_conv's kernel for a k x k conv: its 2x2 block's reach, 6 for 5x5 and 4 for 3x3."""
    return 2 * (k // 2) + SUPERPIXEL


def superpixel_conv(weight: np.ndarray, bias: np.ndarray, subpixel: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The same 'same'-padded k x k conv (OIHW `weight`, k <= 5) as a w x w stride-2 'SAME' conv
    (w = superpixel_window(k): 6 for 5x5, 4 for 3x3) that emits each 2x2 block's four outputs as channels:
    HWIO kernel and bias in TF's depth order, so depth_to_space(2) of its output is the conv's output
    (depth_to_space(2 * subpixel) for a head whose channels are pixel_shuffle's subpixels).

    Why: XNNPACK's INT8 convs are slow with 4 output channels (the x2 head); per block this conv has w*w
    taps and 4x the outputs. Each output channel holds the very taps of one original output channel, so
    its per-channel INT8 weights and its sums are the original's. Exact for even sizes (the runtime pads
    odd ones).
    """
    out_ch, in_ch, k, _ = weight.shape
    radius, block = k // 2, SUPERPIXEL
    if radius > 2:
        raise ValueError(f"a {k}x{k} conv does not fit a 6x6 superpixel conv")
    window = superpixel_window(k)
    kernel = np.zeros((window, window, in_ch, block * block * out_ch), np.float32)
    order = np.arange(block * block * out_ch).reshape(block, block, out_ch)  # (py, px, o) -> depth
    if subpixel > 1:  # o = sy * S + sx goes to depth (py * S + sy) * 2S + (px * S + sx)
        sy, sx = np.divmod(np.arange(out_ch), subpixel)
        order = np.array([[(py * subpixel + sy) * block * subpixel + px * subpixel + sx for px in range(block)]
                          for py in range(block)])
    for py in range(block):
        for px in range(block):  # output (2i + py, 2j + px) reads input (2i + py + ky, ...): window row py + ky + radius
            for ky in range(-radius, radius + 1):
                for kx in range(-radius, radius + 1):
                    kernel[py + ky + radius, px + kx + radius, :, order[py, px]] = weight[:, :, ky + radius, kx + radius]
    full_bias = np.zeros(block * block * out_ch, np.float32)
    full_bias[order.reshape(-1)] = np.tile(bias, block * block)
    return kernel, full_bias
