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
from quantize.rewrites import REWRITES, SUPERPIXEL, rows_as_channels, superpixel_conv, superpixel_layers
from quantize.qat import on_int8_grid
from training.model import FSRCNN, relu_layers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.getLogger("absl").setLevel(logging.ERROR)  # the converter's deprecation chatter


FORMS = ("prelu", "folded-relu", "split-relu")


def to_pixel_range(x):
    """Clamp to [0, 1]: ReLU, which the converter fuses into the head conv, then MINIMUM, which
    fold_clamps removes again. INT8 graphs end in it so that the head's output range is exactly
    [0, 1]: output scale 1/255, zero point 0, each output value a pixel. Calibrated on the raw head, the
    range ran to about 1.1, and that coarser grid, rounded again to pixels, cost the stream 0.025 dB on
    Set5 x2. Clamping loses nothing: every score clamps there too."""
    import tensorflow as tf

    return tf.minimum(tf.nn.relu(x), 1.0)


def fold_clamps(flatbuffer: bytes) -> bytes:
    """The INT8 graph without the MINIMUMs of to_pixel_range and of the hidden layers' ceilings: each conv
    before one (its ReLU fused) takes the MINIMUM's output quantization (for the head [0, 1] in 256 steps),
    and int8 saturation then clamps at the top by itself. Left in, a MINIMUM requantizes, so XNNPACK hands
    it to a reference kernel between two partitions, and the conv's output is rounded twice: onto its
    calibrated range's grid, then onto the MINIMUM's."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    graph = model.subgraphs[0]

    def kind(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    for minimum in [op for op in graph.operators if kind(op) == schema.BuiltinOperator.MINIMUM]:
        conv_out, clamped = minimum.inputs[0], minimum.outputs[0]
        [conv] = [op for op in graph.operators if conv_out in op.outputs]
        if kind(conv) != schema.BuiltinOperator.CONV_2D or conv.builtinOptions.fusedActivationFunction != \
                schema.ActivationFunctionType.RELU:
            raise ValueError("fold_clamps: a MINIMUM does not follow a conv with a fused ReLU")
        graph.tensors[conv_out].quantization = graph.tensors[clamped].quantization
        for op in graph.operators:
            op.inputs = [conv_out if t == clamped else t for t in op.inputs]
        graph.outputs = [conv_out if t == clamped else t for t in graph.outputs]
        graph.operators.remove(minimum)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tf_function(model: FSRCNN, form: str = "prelu", balance: list | None = None, rewrites: tuple = REWRITES,
                pixel_range: bool = False, int8_grid: bool = False, ceilings: list[float] | None = None):
    """The TF twin with the weights as constants: NHWC, input [1, H, W, 1] float 0..1, dynamic H and W.

    form "prelu": convs and PReLUs, PReLU written as relu(x) + (-alpha[1,1,C]) * relu(-x), the one
    form (Keras') the converter fuses into a PRELU op. "folded-relu" and "split-relu": every layer
    conv + ReLU (training.model.relu_layers, with its channel gains `balance`), the forms XNNPACK runs
    as one INT8 graph, with the `rewrites` (REWRITES) of those forms: "rows", the first conv on rows
    (rows_as_channels); "superpixel", the convs of superpixel_layers on 2x2 superpixels (superpixel_conv,
    which then needs even H and W). `pixel_range`: the head's output clamped by to_pixel_range.
    `int8_grid`: the ReLU form's weights snapped to their INT8 grid (quantize.qat.on_int8_grid). `ceilings`:
    each hidden layer of the ReLU form clamped there (MINIMUM, folded into the conv's output range as the
    head's clamp is: fold_clamps; quantize.qat.activation_ceiling).
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
                for i, w in enumerate(model.head_as_conv())]
    elif form in ("folded-relu", "split-relu"):
        layers = relu_layers(model, form.split("-")[0], balance)
        oihw = [(w.detach().numpy(), b.detach().numpy()) for w, b in (on_int8_grid(layers) if int8_grid else layers)]
        *body, head = [(w.transpose(2, 3, 1, 0).copy(), b) for w, b in oihw]
        stages = [(w, b, None) for w, b in body]
        if ceilings is not None and len(ceilings) != len(stages):
            raise ValueError(f"{len(ceilings)} ceilings for {len(stages)} hidden layers")
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
        for i, (w, b, neg_alpha) in enumerate(stages):
            x = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
            x = tf.nn.relu(x) if neg_alpha is None else tf.nn.relu(x) + neg_alpha * tf.nn.relu(-x)
            if ceilings is not None:
                x = tf.minimum(x, ceilings[i])
        if last is not None:
            x, block = tf.nn.bias_add(tf.nn.conv2d(x, last[0], SUPERPIXEL, "SAME"), last[1]), SUPERPIXEL * scale
        else:
            x, block = tf.nn.bias_add(tf.nn.conv2d(x, head[0], 1, "SAME"), head[1]), scale
        return tf.nn.depth_to_space(to_pixel_range(x) if pixel_range else x, block)

    return serve


def convert(model: FSRCNN, path: Path, precision: str, patches: np.ndarray | None = None,
            io_dtype: str = "uint8", form: str | None = None, balance: list | None = None,
            rewrites: tuple = REWRITES, ceilings: list[float] | None = None) -> Path:
    """Write `path` (.tflite). INT8: every op INT8 (TFLITE_BUILTINS_INT8), `io_dtype` input and output,
    calibrated on `patches` (N x 1 x h x w float 0..1 training patches), hidden layers clamped at `ceilings`
    when given. The form defaults to PReLU for FP32 (fastest under XNNPACK) and folded ReLU for INT8 (one
    XNNPACK INT8 graph)."""
    pixel_range = precision == "int8"
    serve = tf_function(model, form or ("folded-relu" if pixel_range else "prelu"), balance, rewrites, pixel_range,
                        int8_grid=pixel_range, ceilings=ceilings)
    return convert_function(serve, path, precision, patches, io_dtype, pixel_range)


def convert_function(serve, path: Path, precision: str, patches: np.ndarray | None = None,
                     io_dtype: str = "uint8", pixel_range: bool = False) -> Path:
    """Write `path` (.tflite) from a tf.function of one NHWC float input (convert's converter settings);
    `pixel_range`: an INT8 function ending in to_pixel_range; its MINIMUMs (that one and any ceilings') are folded
    (fold_clamps)."""
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
    return write_atomic(path, fold_clamps(flatbuffer) if pixel_range else flatbuffer)


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
