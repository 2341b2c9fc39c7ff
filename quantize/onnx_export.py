"""FP32 ONNX from the PyTorch definition, and INT8 (QDQ, per-channel) by ONNX Runtime static quantization."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from edge_runtime.backends import ORT_SESSION_CONFIG
from quantize.qat import fake_quant_weight
from quantize.rewrites import SUPERPIXEL, superpixel_conv
from training.model import FSRCNN, FSRCNNReLUForm, FSRCNNSubpixel

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
HEADS = ("deconv", "subpixel", "folded-relu", "split-relu")


class ReLUGraph(torch.nn.Module):
    """An INT8 ReLU form (FSRCNNReLUForm) as the ONNX INT8 artifacts run it. `superpixel`: the head on 2x2
    superpixels (quantize.rewrites.superpixel_conv), a 6x6 (for a 3x3 head 4x4) stride-2 conv, then
    pixel_shuffle, which for one output channel is TF's depth_to_space; exact for even sizes (the runtime
    pads odd ones).
    `pixel_range`: the head's output clamped to [0, 1] before the shuffle, for the reason
    quantize.tflite_export.to_pixel_range gives; ONNX Runtime's QDQ quantizer folds the clamp into the
    conv's output range, so no op is added. `int8_grid`: every weight snapped to its INT8 grid, as
    quantize.qat.on_int8_grid says why. `ceilings`: each hidden layer's output clamped there (Clip instead of
    Relu), which the quantizer folds into the conv's output range the same way (quantize.qat.activation_ceiling)."""

    def __init__(self, form: FSRCNNReLUForm, superpixel: bool = False, pixel_range: bool = False,
                 int8_grid: bool = False, ceilings: list[float] | None = None):
        super().__init__()
        self.ceilings = ceilings or [None] * (len(form.convs) - 1)
        if len(self.ceilings) != len(form.convs) - 1:
            raise ValueError(f"{len(self.ceilings)} ceilings for {len(form.convs) - 1} hidden layers")
        if int8_grid:
            with torch.no_grad():
                for conv in form.convs:
                    conv.weight.copy_(fake_quant_weight(conv.weight))
        self.config, self.body, self.head, self.pixel_range = form.config, form.convs[:-1], form.convs[-1], pixel_range
        self.block = form.config.scale
        if superpixel:
            kernel, bias = superpixel_conv(self.head.weight.detach().numpy(), self.head.bias.detach().numpy(),
                                           form.config.scale)
            self.head = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], stride=SUPERPIXEL,
                                        padding=(kernel.shape[0] - SUPERPIXEL) // 2)
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))
                self.head.bias.copy_(torch.from_numpy(bias))
            self.block *= SUPERPIXEL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, ceiling in zip(self.body, self.ceilings):
            x = F.relu(conv(x)) if ceiling is None else conv(x).clamp(0.0, float(ceiling))
        x = self.head(x)
        return F.pixel_shuffle(x.clamp(0, 1) if self.pixel_range else x, self.block)


def deployable(model: FSRCNN, head: str, balance: list[torch.Tensor] | None = None,
               superpixel: bool = False, pixel_range: bool = False, int8_grid: bool = False,
               ceilings: list[float] | None = None) -> torch.nn.Module:
    """The exported module: the paper's 9x9 deconvolution, its exact conv + depth_to_space rewrite,
    or that with every PReLU rewritten into ReLUs (the INT8 forms, training.model.relu_layers), with
    `superpixel`, `pixel_range`, `int8_grid` and `ceilings` as ReLUGraph takes them."""
    if head == "deconv":
        return model.eval()
    if head == "subpixel":
        return FSRCNNSubpixel(model).eval()
    if head in ("folded-relu", "split-relu"):
        return ReLUGraph(FSRCNNReLUForm(model, head.split("-")[0], balance), superpixel, pixel_range, int8_grid,
                         ceilings).eval()
    raise ValueError(f"head must be one of {HEADS}, not {head!r}")


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".tmp")


def export_fp32(model: FSRCNN, path: Path, head: str = "subpixel", balance: list[torch.Tensor] | None = None,
                superpixel: bool = False, pixel_range: bool = False, int8_grid: bool = False,
                ceilings: list[float] | None = None) -> Path:
    """Opset-17 ONNX, input lr [1,1,H,W] float32 0..1, dynamic H and W, weights embedded
    (`balance`: an INT8 form's channel gains, see training.model.relu_layers; `superpixel`, `pixel_range`,
    `int8_grid`, `ceilings`: see ReLUGraph, for the float source of an INT8 model)."""
    module = deployable(model, head, balance, superpixel, pixel_range, int8_grid, ceilings)
    example = torch.rand(1, 1, 32, 40)
    height = torch.export.Dim("height", min=1, max=8192)
    width = torch.export.Dim("width", min=1, max=8192)
    tmp = _atomic_target(path)
    for name in ("torch.onnx", "onnxscript"):  # quiet the exporter's per-op chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=OPSET, dynamo=True, external_data=False,
            dynamic_shapes={"x": {2: height, 3: width}},
        )
    graph = onnx.load(str(tmp))
    onnx.checker.check_model(graph)
    os.replace(tmp, path)
    return path


class _PatchReader:
    """onnxruntime CalibrationDataReader over N x 1 x h x w patches, one at a time (batch is 1)."""

    def __init__(self, patches: np.ndarray):
        self._items = iter([{INPUT_NAME: patches[i : i + 1]} for i in range(len(patches))])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # the API asks for it; one pass is all the calibrators use
        pass


def quantize_int8(fp32_path: Path, path: Path, patches: np.ndarray, method: str = "minmax") -> Path:
    """Static QDQ quantization: uint8 activations, per-channel int8 weights."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    tmp = _atomic_target(path)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quantize_static(
            str(fp32_path), str(tmp), _PatchReader(patches), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
        )
    quantized = onnx.load(str(tmp))
    exact_constant_channels(quantized, onnx.load(str(fp32_path)))
    onnx.save(quantized, str(tmp))
    os.replace(tmp, path)
    return path


BIAS_STEPS = 2**20  # the int32 steps an all-zero weight channel's bias gets (float32 keeps 24 bits of it)


def exact_constant_channels(quantized: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Give every output channel whose INT8 weights are all zero a weight scale that keeps its bias exact
    (in place). ONNX Runtime's quantizer gives such a channel (the folded form's ones channel,
    training.model.relu_layers) weight scale 1, so its int32 bias lands on a grid as coarse as the input's
    activations (0.023 in fsrcnn_x3), and the constant then rounds to another activation level than the
    QAT simulation and LiteRT give it: measured 0.018 dB on Set5 for fsrcnn_x3 and x4. With no weight to
    scale, any scale is right, and the bias's is input scale x weight scale, as QLinearConv requires."""
    inits = {init.name: init for init in quantized.graph.initializer}
    float_inits = {init.name: init for init in source.graph.initializer}
    float_convs = {node.name: node for node in source.graph.node if node.op_type == "Conv"}
    producers = {out: node for node in quantized.graph.node for out in node.output}
    array = lambda name: onnx.numpy_helper.to_array(inits[name])
    for conv in (node for node in quantized.graph.node if node.op_type == "Conv" and len(node.input) == 3):
        x_dq, w_dq, b_dq = (producers[name] for name in conv.input)
        weight = array(w_dq.input[0])
        bias = onnx.numpy_helper.to_array(float_inits[float_convs[conv.name].input[2]]).astype(np.float64)
        zero = ~weight.reshape(len(weight), -1).any(axis=1) & (bias != 0)
        if not zero.any():
            continue
        x_scale = array(x_dq.input[1])
        w_scale, b_scale, b_int = (array(name).copy() for name in (w_dq.input[1], b_dq.input[1], b_dq.input[0]))
        w_scale[zero] = np.abs(bias[zero]) / (x_scale * BIAS_STEPS)
        b_scale[zero] = x_scale * w_scale[zero]
        b_int[zero] = np.round(bias[zero] / b_scale[zero])
        for name, value in ((w_dq.input[1], w_scale), (b_dq.input[1], b_scale), (b_dq.input[0], b_int)):
            inits[name].CopyFrom(onnx.numpy_helper.from_array(value, name))


def runtime_op_report(path: Path) -> dict:
    """What ONNX Runtime actually executes after its graph fusions: QLinear* ops run INT8,
    everything else (besides the Q/DQ casts) runs float."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        for key, value in ORT_SESSION_CONFIG.items():  # what OnnxUpscaler runs
            options.add_session_config_entry(key, value)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath).graph.node
    casts = ("QuantizeLinear", "DequantizeLinear")
    int8 = [n.op_type for n in nodes if n.op_type.startswith("QLinear")]
    float_ops = [n.op_type for n in nodes if not n.op_type.startswith("QLinear") and n.op_type not in casts]
    return {"int8": int8, "float": float_ops, "quantize_casts": sum(n.op_type in casts for n in nodes)}
