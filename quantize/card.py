"""Model cards: the JSON beside each artifact that says what it is, how it was made and how good it is."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from edge_runtime.backends import LiteRTUpscaler, OnnxUpscaler
from edge_runtime.files import sha256, write_json
from quantize.onnx_export import deployable
from quantize.rewrites import superpixel_layers, superpixel_window
from training.model import FSRCNN, count_parameters, macs_per_lr_pixel

TOOLS = ("torch", "onnx", "onnxruntime", "onnxscript", "tensorflow-cpu", "ai-edge-litert", "numpy")


def tool_versions() -> dict:
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def io_spec(path: Path) -> dict:
    """Input/output tensors as the runtime sees them: layout, dtype, value range, quantization."""
    if path.suffix == ".onnx":
        session = OnnxUpscaler(path, threads=1).session
        spec = {}
        for role, tensor in (("input", session.get_inputs()[0]), ("output", session.get_outputs()[0])):
            spec[role] = {"name": tensor.name, "layout": "NCHW", "shape": [d if isinstance(d, int) else str(d) for d in tensor.shape],
                          "dtype": "float32", "range": [0.0, 1.0], "meaning": "Y (BT.601, 16-235) / 255"}
        return spec
    runtime = LiteRTUpscaler(path, threads=1)
    runtime._prepare(16, 16)
    spec = {}
    for role, tensor in (("input", runtime.input), ("output", runtime.output)):
        dtype = np.dtype(tensor["dtype"]).name
        scale, zero = tensor["quantization"]
        entry = {"name": tensor["name"], "layout": "NHWC", "shape": [1, "height", "width", 1] if role == "input"
                 else [1, "height*scale", "width*scale", 1], "dtype": dtype, "meaning": "Y (BT.601, 16-235) / 255"}
        if dtype == "float32":
            entry["range"] = [0.0, 1.0]
        else:
            info = np.iinfo(dtype)
            entry["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
            entry["range"] = [float((info.min - zero) * scale), float((info.max - zero) * scale)]
        spec[role] = entry
    return spec


def executed_macs_per_lr_pixel(module: torch.nn.Module, rewrites: tuple = (), runtime: str = "litert") -> int:
    """MACs per LR pixel of the graph the artifact runs, which the paper's count (macs_per_lr_pixel) is not:
    the INT8 ReLU forms widen layers, the subpixel head computes zero taps. Every layer works at LR resolution
    with stride 1 (or, for the deconvolution, per input pixel), so a layer costs its weight count. With the
    `rewrites` (quantize.rewrites): "rows" adds the k x k weights of the one-hot conv that copies rows into
    channels (rows_as_channels); with "superpixel", the convs of superpixel_layers(scale, `runtime`) run
    w x w (superpixel_window) with B*B times the outputs, once per B*B LR pixels (superpixel_conv)."""
    convs = [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    macs = [conv.weight.numel() for conv in convs]
    if "superpixel" in rewrites:
        for i in superpixel_layers(module.config.scale, runtime):
            out_ch, in_ch, k = convs[i].weight.shape[:3]
            macs[i] = superpixel_window(k) ** 2 * out_ch * in_ch
    if "rows" in rewrites:
        macs.append(convs[0].weight.shape[-1] ** 2)
    return sum(macs)


def write_card(artifact: Path, model: FSRCNN, *, precision: str, head: str, quality: dict, checkpoint: Path,
               rewrites: tuple = (), extra: dict | None = None) -> Path:
    c = model.config
    runtime = "onnxruntime" if artifact.suffix == ".onnx" else "litert"
    card = {
        "artifact": artifact.name,
        "model_id": f"{'fsrcnn' if (c.d, c.s, c.m) == (56, 12, 4) else 'fsrcnn-s'}_x{c.scale}",
        "architecture": {"name": "FSRCNN", "d": c.d, "s": c.s, "m": c.m, "head": head,
                         "rewrites": list(rewrites),
                         "superpixel_convs": list(superpixel_layers(c.scale, runtime)) if "superpixel" in rewrites else []},
        "scale": c.scale,
        "format": "onnx" if artifact.suffix == ".onnx" else "tflite",
        "runtime": runtime,
        "precision": precision,
        **io_spec(artifact),
        # edge_runtime.backends.card_border: what the runtime mirrors around each frame before this graph
        "mirrored_border": c.border,
        "macs_per_lr_pixel": macs_per_lr_pixel(c),
        "executed_macs_per_lr_pixel": executed_macs_per_lr_pixel(deployable(model, head), rewrites, runtime),
        "parameters": count_parameters(model),
        "quality": quality,
        "sha256": sha256(artifact),
        "size_bytes": artifact.stat().st_size,
        "checkpoint": {"file": checkpoint.name, "sha256": sha256(checkpoint)},
        "tools": tool_versions(),
        **(extra or {}),
    }
    return write_json(artifact.with_name(artifact.name + ".json"), card)
