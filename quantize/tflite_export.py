"""TFLite FP32 and full-integer INT8 via a TensorFlow rebuild of the same FSRCNN with copied weights.

The head is the exact conv + depth_to_space rewrite of the 9x9 deconvolution: LiteRT's
TRANSPOSE_CONV is far slower than CONV_2D, and TF 'same' padding would shift a stride-s
deconvolution against PyTorch. Parity with PyTorch is tested for both precisions.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from edge_runtime.files import write_atomic
from training.model import FSRCNN, deconv_to_subpixel, relu_layers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.getLogger("absl").setLevel(logging.ERROR)  # the converter's deprecation chatter


FORMS = ("prelu", "folded-relu", "split-relu")
SUPERPIXEL = 2  # the INT8 x2 head runs once per 2x2 block of LR pixels
# Exact rewrites of the INT8 ReLU forms for XNNPACK: the first conv on rows (rows_as_channels), the convs of
# superpixel_layers on 2x2 superpixels (superpixel_conv)
REWRITES = ("rows", "superpixel")


def superpixel_layers(scale: int) -> tuple[int, ...]:
    """Which convs of an INT8 form run on superpixels: the head at x2 only, where it has 4 outputs.
    Measured (model-only, LiteRT, 2 threads): the x2 head on superpixels gains 1.2x to 1.4x
    (benchmarks/int8_forms.py). The first conv on superpixels lost 15% to 35% at every scale: its 2d
    outputs become 8d, and depth_to_space moves the widest tensor (it runs on rows instead:
    rows_as_channels). The x3 and x4 heads already emit 9 and 16 channels."""
    return (-1,) if scale == 2 else ()


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


def superpixel_conv(weight: np.ndarray, bias: np.ndarray, subpixel: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The same 'same'-padded k x k conv (OIHW `weight`, k <= 5) as a 6x6 stride-2 'SAME' conv that emits
    each 2x2 block's four outputs as channels: HWIO kernel and bias in TF's depth order, so
    depth_to_space(2) of its output is the conv's output (depth_to_space(2 * subpixel) for a head whose
    channels are pixel_shuffle's subpixels).

    Why: XNNPACK's INT8 convs are slow with 4 output channels (the x2 head); per block this conv has 36
    taps and 4x the outputs. Each output channel holds the very taps of one original output channel, so
    its per-channel INT8 weights and its sums are the original's. Exact for even sizes (the runtime pads
    odd ones).
    """
    out_ch, in_ch, k, _ = weight.shape
    radius, block = k // 2, SUPERPIXEL
    if radius > 2:
        raise ValueError(f"a {k}x{k} conv does not fit a 6x6 superpixel conv")
    kernel = np.zeros((6, 6, in_ch, block * block * out_ch), np.float32)
    order = np.arange(block * block * out_ch).reshape(block, block, out_ch)  # (py, px, o) -> depth
    if subpixel > 1:  # o = sy * S + sx goes to depth (py * S + sy) * 2S + (px * S + sx)
        sy, sx = np.divmod(np.arange(out_ch), subpixel)
        order = np.array([[(py * subpixel + sy) * block * subpixel + px * subpixel + sx for px in range(block)]
                          for py in range(block)])
    for py in range(block):
        for px in range(block):  # output (2i + py, 2j + px) reads input (2i + py + ky, ...): window row py + ky + 2
            for ky in range(-radius, radius + 1):
                for kx in range(-radius, radius + 1):
                    kernel[py + ky + 2, px + kx + 2, :, order[py, px]] = weight[:, :, ky + radius, kx + radius]
    full_bias = np.zeros(block * block * out_ch, np.float32)
    full_bias[order.reshape(-1)] = np.tile(bias, block * block)
    return kernel, full_bias


def tf_function(model: FSRCNN, form: str = "prelu", balance: list | None = None, rewrites: tuple = REWRITES):
    """The TF twin with the weights as constants: NHWC, input [1, H, W, 1] float 0..1, dynamic H and W.

    form "prelu": convs and PReLUs, PReLU written as relu(x) + (-alpha[1,1,C]) * relu(-x), the one
    form (Keras') the converter fuses into a PRELU op. "folded-relu" and "split-relu": every layer
    conv + ReLU (training.model.relu_layers, with its channel gains `balance`), the forms XNNPACK runs
    as one INT8 graph, with the `rewrites` (REWRITES) of those forms: "rows", the first conv on rows
    (rows_as_channels); "superpixel", the convs of superpixel_layers on 2x2 superpixels (superpixel_conv,
    which then needs even H and W).
    """
    import tensorflow as tf

    def hwio(weight):
        return weight.detach().permute(2, 3, 1, 0).contiguous().numpy()

    scale = model.config.scale
    if form == "prelu":
        layers = list(model.body)
        stages = [(hwio(c.weight), c.bias.detach().numpy(), -p.weight.detach().numpy().reshape(1, 1, -1))
                  for c, p in zip(layers[0::2], layers[1::2])]
        head = [hwio(w) if i == 0 else w.detach().numpy()
                for i, w in enumerate(deconv_to_subpixel(model.deconv.weight, model.deconv.bias, scale))]
    elif form in ("folded-relu", "split-relu"):
        oihw = [(w.detach().numpy(), b.detach().numpy()) for w, b in relu_layers(model, form.split("-")[0], balance)]
        *body, head = [(w.transpose(2, 3, 1, 0).copy(), b) for w, b in oihw]
        stages = [(w, b, None) for w, b in body]
    else:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    rows = last = None
    if form != "prelu":
        if "rows" in rewrites:
            rows, first = rows_as_channels(stages[0][0])
            stages[0] = (first, *stages[0][1:])
        if "superpixel" in rewrites and -1 in superpixel_layers(scale):
            last = superpixel_conv(*oihw[-1], subpixel=scale)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 1], tf.float32, name="lr")])
    def serve(x):
        if rows is not None:
            x = tf.nn.conv2d(x, rows, 1, "SAME")
        for w, b, neg_alpha in stages:
            x = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
            x = tf.nn.relu(x) if neg_alpha is None else tf.nn.relu(x) + neg_alpha * tf.nn.relu(-x)
        if last is not None:
            x = tf.nn.bias_add(tf.nn.conv2d(x, last[0], SUPERPIXEL, "SAME"), last[1])
            return tf.nn.depth_to_space(x, SUPERPIXEL * scale)
        x = tf.nn.bias_add(tf.nn.conv2d(x, head[0], 1, "SAME"), head[1])
        return tf.nn.depth_to_space(x, scale)

    return serve


def convert(model: FSRCNN, path: Path, precision: str, patches: np.ndarray | None = None,
            io_dtype: str = "uint8", form: str | None = None, balance: list | None = None,
            rewrites: tuple = REWRITES) -> Path:
    """Write `path` (.tflite). INT8: every op INT8 (TFLITE_BUILTINS_INT8), `io_dtype` input and output,
    calibrated on `patches` (N x 1 x h x w float 0..1 training patches). The form defaults to PReLU
    for FP32 (fastest under XNNPACK) and folded ReLU for INT8 (one XNNPACK INT8 graph)."""
    serve = tf_function(model, form or ("folded-relu" if precision == "int8" else "prelu"), balance, rewrites)
    return convert_function(serve, path, precision, patches, io_dtype)


def convert_function(serve, path: Path, precision: str, patches: np.ndarray | None = None,
                     io_dtype: str = "uint8") -> Path:
    """Write `path` (.tflite) from a tf.function of one NHWC float input (convert's converter settings)."""
    import tensorflow as tf

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
        if precision == "int8":
            if patches is None:
                raise ValueError("INT8 conversion needs calibration patches")

            def representative():
                for patch in patches:
                    yield [np.transpose(patch, (1, 2, 0))[None].astype(np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = getattr(tf, io_dtype)
            converter.inference_output_type = getattr(tf, io_dtype)
        elif precision != "fp32":
            raise ValueError(f"precision must be fp32 or int8, not {precision!r}")
        flatbuffer = converter.convert()
    return write_atomic(path, flatbuffer)


def op_report(path: Path) -> dict:
    """Op types in the flatbuffer and the dtypes of their tensors: proves 'all INT8' claims."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], [1, 16, 16, 1])
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        dtypes = sorted({np.dtype(details[i]["dtype"]).name for i in list(op["inputs"]) + list(op["outputs"])
                         if i >= 0 and i in details})
        ops.append({"op": op["op_name"], "dtypes": dtypes})
    return {"ops": ops}
