"""`make quantize`: rebuild every deployable artifact from the shipped checkpoints.

    python -m quantize.build                       # all models, ONNX + TFLite, FP32 + INT8
    python -m quantize.build --models fsrcnn-s_x2 --formats onnx

Per model: FP32 ONNX and TFLite from the checkpoint; a quantization-aware fine-tuned copy
(cached in training/weights/<id>_qat.pt, keyed by the checkpoint's sha256) for the INT8 ONNX
(ONNX Runtime static QDQ) and the full-integer INT8 TFLite; every artifact scored on Set5 and
Set14 through its real runtime; a model card beside each; results/quantize.json for the README.
A build with another --out-dir writes only there: its QAT copies and quantize.json too.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.backends import load_upscaler
from edge_runtime.errors import BackendError
from edge_runtime.files import OutputError, check_writable, sha256, write_json
from edge_runtime.metrics import evaluate_set, load_eval_set
from edge_runtime.models import MODELS_DIR
from quantize import onnx_export, tflite_export
from quantize.calibration import CALIBRATION_SETS, calibration_patches
from quantize.card import write_card
from quantize.qat import INT8_FORM, QAT_TARGETS, QuantSim, quant_aware_finetune
from quantize.rewrites import ONNX_REWRITES, REWRITES, superpixel_layers
from training.data import DOWNSCALES, DataError, resolve_data_dir, set_folder
from training.evaluate import WEIGHTS_DIR
from training.model import PRESETS, SCALES, CheckpointError, FSRCNN, load_weights, model_id, save_weights

FORMATS = ("onnx", "tflite")
EVAL_SETS = ("Set5", "Set14")
# FP32 heads by measurement (benchmarks/artifacts.py, results/artifact_speed.json): at x2 conv + DepthToSpace
# ran 0.74x to 1.02x the 9x9 ConvTranspose in ONNX Runtime on the CPUs measured; at x3 and x4 the two were
# within 10% on an AVX512-VNNI EPYC, and an Intel Xeon ran conv + DepthToSpace up to 1.28x faster for FSRCNN-s
# (BENCHMARKS.md, *Artifact speed*). LiteRT's TRANSPOSE_CONV is the slow one there, and TF's padding would shift it.
# INT8 artifacts use the folded-ReLU form (training.model.relu_layers), which both INT8 runtimes run without
# float fallbacks, with the exact rewrites of quantize.rewrites that each runtime's kernels gain from
# (benchmarks/int8_forms.py for LiteRT, benchmarks/onnx_int8_heads.py for ONNX Runtime).
FP32_HEAD = {"onnx": "deconv", "tflite": "subpixel"}
INT8_HEAD = f"{INT8_FORM}-relu"
CALIBRATION = {"sets": list(CALIBRATION_SETS), "patches": 128, "lr_patch": 48, "method": "minmax"}
# Bumped when QAT or its calibration changes, so cached QAT weights are retrained: 3 = channel balance,
# activation ranges from the export's calibration patches, input range [0, 1]; 4 = calibration and QAT
# patches cut by the gather sampler (training/data.py), so other patches than recipe 3's; 5 = the folded-ReLU
# INT8 form, constant channels left out of the balance; 6 = the head's range is the pixel range [0, 1]; 7 = ranges
# calibrated on the weights' INT8 grid, which the exports now snap the weights to (quantize.qat.on_int8_grid); 8 = each
# hidden layer's range up to its activation ceiling (quantize.qat.activation_ceiling), not its maximum.
QAT_RECIPE = 8
# What QAT fits (quantize.qat.quant_aware_finetune), by measurement in simulation (Set5, the shipped QAT seed).
# On the T91-tuned weights, the HR patches beat distillation from the FP32 model for FSRCNN-s: x2 / x3 / x4
# 36.108 / 32.239 / 30.018 dB against 36.090 / 32.235 / 30.007. (Distillation had won on the earlier weights,
# trained on T91 + BSD200: FSRCNN-s x2 36.079 / 36.079 over two seeds against 36.046 / 36.056; FSRCNN x2 did
# better on HR either way, 36.735 against 36.728.)
QAT_TARGET = "hr"
RESULTS = Path("results/quantize.json")


class BuildError(Exception):
    pass


def qat_weights(model: FSRCNN, ident: str, checkpoint: Path, data_dir: Path, patches: np.ndarray,
                iters: int, target: str, train_sets: list[str], transpose: bool, downscales: list[float],
                cache_dir: Path) -> tuple[FSRCNN, list[torch.Tensor]]:
    """The quantization-aware copy and its channel gains: reused from cache_dir or beside the checkpoint while
    made from this very checkpoint by this recipe, else fine-tuned and saved in cache_dir."""
    path = cache_dir / f"{ident}_qat.pt"
    digest = sha256(checkpoint)
    for cached in dict.fromkeys((path, checkpoint.with_name(path.name))):
        meta_path = cached.with_suffix(".json")
        if cached.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("qat_from_sha256") == digest and meta.get("qat_iters") == iters and meta.get("qat_recipe") == QAT_RECIPE \
                    and meta.get("qat_target") == target and meta.get("qat_sets") == train_sets \
                    and meta.get("qat_transpose", False) == transpose \
                    and meta.get("qat_downscales", list(DOWNSCALES)) == downscales:
                return load_weights(cached), [torch.tensor(gains) for gains in meta["balance"]]
    tuned, sim_psnr, balance = quant_aware_finetune(model, data_dir, patches, iters=iters, target=target,
                                                   train_sets=tuple(train_sets), transpose=transpose,
                                                   downscales=tuple(downscales), desc=f"{ident} QAT")
    save_weights(tuned, path, {"qat_from": checkpoint.name, "qat_from_sha256": digest, "qat_iters": iters,
                               "qat_recipe": QAT_RECIPE, "qat_target": target, "qat_sets": train_sets, "qat_transpose": transpose,
                               "qat_downscales": downscales,
                               "simulated_int8_set5_psnr": round(sim_psnr, 4),
                               "balance": [gains.tolist() for gains in balance]})
    return tuned, balance


def score(path: Path, pairs: dict, scale: int, border: int) -> dict:
    upscaler = load_upscaler(path, threads=0, border=border)  # scored before its card is written
    result = {}
    for name, set_pairs in pairs.items():
        scores = evaluate_set(upscaler.run, set_pairs, scale)
        result[name] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4)}
    return result


def shipping(out_dir: Path) -> bool:
    """A build into the runtime's models folder ships: its QAT copies go beside the checkpoints and its results
    to results/quantize.json (the README's). Any other --out-dir keeps all it writes inside itself."""
    return out_dir.resolve() == MODELS_DIR.resolve()


def build_model(ident: str, data_dir: Path, out_dir: Path, formats: list[str], qat_iters: int,
                weights_dir: Path = WEIGHTS_DIR, qat_target: str = QAT_TARGET) -> dict:
    checkpoint = weights_dir / f"{ident}.pt"
    steps = ["load", "calibration data", "QAT"] + [f"{f} {p}" for f in formats for p in ("fp32", "int8")]
    bar = tqdm(steps, desc=ident, unit="step", leave=False)
    step = "load"
    try:
        model = load_weights(checkpoint)
        scale = model.config.scale
        pairs = {name: load_eval_set(set_folder(data_dir, name), scale) for name in EVAL_SETS}
        bar.update(1)
        step = "calibration data"
        patches = calibration_patches(data_dir, scale, CALIBRATION["patches"], CALIBRATION["lr_patch"])
        bar.update(1)
        step = "QAT"
        target = qat_target
        trained = json.loads(checkpoint.with_suffix(".json").read_text())  # QAT on the checkpoint's own data
        train_sets, transpose = trained.get("train_sets", list(CALIBRATION_SETS)), trained.get("transpose", False)
        downscales = trained.get("downscales", list(DOWNSCALES))
        tuned, balance = qat_weights(model, ident, checkpoint, data_dir, patches, qat_iters, target, train_sets, transpose,
                                     downscales, weights_dir if shipping(out_dir) else out_dir)
        ceilings = QuantSim(tuned, torch.from_numpy(patches), balance).ceilings()
        bar.update(1)
        made = {}
        common = {"calibration": CALIBRATION, "qat": {"iters": qat_iters, "target": target, "sets": train_sets,
                                                      "transpose": transpose,
                                                      "weights": f"{ident}_qat.pt",
                                                      "channel_balance": f"{ident}_qat.json",
                                                      "activation_ceilings": [round(c, 4) for c in ceilings]}}
        for fmt in formats:
            for precision in ("fp32", "int8"):
                step = f"{fmt} {precision}"
                bar.set_postfix_str(step)
                source = model if precision == "fp32" else tuned
                target = out_dir / f"{ident}_{precision}.{'onnx' if fmt == 'onnx' else 'tflite'}"
                head = FP32_HEAD[fmt] if precision == "fp32" else INT8_HEAD
                if fmt == "onnx":
                    if precision == "fp32":
                        onnx_export.export_fp32(source, target, head)
                    else:
                        with tempfile.TemporaryDirectory() as tmp:
                            fp32 = onnx_export.export_fp32(source, Path(tmp) / "fp32.onnx", head, balance,
                                                           superpixel="superpixel" in ONNX_REWRITES
                                                           and -1 in superpixel_layers(scale, "onnxruntime"),
                                                           pixel_range=True, int8_grid=True, ceilings=ceilings)
                            onnx_export.quantize_int8(fp32, target, patches, CALIBRATION["method"])
                    ops = onnx_export.runtime_op_report(target)
                else:
                    form = "prelu" if precision == "fp32" else INT8_HEAD  # PReLU form with the subpixel head
                    tflite_export.convert(source, target, precision, patches if precision == "int8" else None, form=form,
                                          balance=balance if precision == "int8" else None,
                                          ceilings=ceilings if precision == "int8" else None)
                    ops = tflite_export.op_report(target)
                quality = score(target, pairs, scale, model.config.border)
                extra = {"ops": ops, **(common if precision == "int8" else {})}
                if precision == "int8":
                    extra["fp32_reference"] = made[f"{fmt} fp32"]["quality"]
                write_card(target, source, precision=precision, head=head, quality=quality,
                           rewrites=() if precision == "fp32" else ONNX_REWRITES if fmt == "onnx" else REWRITES,
                           checkpoint=checkpoint, extra=extra)
                made[step] = {"artifact": target.name, "quality": quality}
                bar.update(1)
        bar.close()
        return made
    except (CheckpointError, DataError, BackendError) as err:
        raise BuildError(f"{ident}, step '{step}': {err}") from None
    except Exception as err:
        raise BuildError(f"{ident}, step '{step}': {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None


def record(results: Path, ident: str, made: dict) -> None:
    """Merge one model's results into the JSON the README table comes from (read just before the
    write, so builds of different models can run side by side)."""
    data = json.loads(results.read_text()) if results.is_file() else {}
    data[ident] = {**data.get(ident, {}), **made}
    write_json(results, dict(sorted(data.items())))


def main(argv: list[str] | None = None) -> int:
    all_ids = [model_id(name, scale) for name in PRESETS for scale in SCALES]
    p = argparse.ArgumentParser(prog="python -m quantize.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=all_ids, choices=all_ids, metavar="ID",
                   help=f"model ids, of {', '.join(all_ids)} (default: all)")
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                   help=f"artifact formats, each FP32 and INT8 (default: {' '.join(FORMATS)})")
    p.add_argument("--data-dir", help="calibration (T91, BSD200) and evaluation (Set5, Set14) sets; default $EDGE_SR_DATA")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR,
                   help="where the checkpoints <id>.pt are (default: the shipped ones, training/weights)")
    p.add_argument("--out-dir", type=Path, default=MODELS_DIR,
                   help="where the artifacts go (default: the runtime's models folder, which ships them); any other "
                        "folder also gets the QAT copies and the results JSON, so nothing shipped changes")
    p.add_argument("--qat-iters", type=int, default=4000, help="quantization-aware fine-tuning steps (default: 4000)")
    p.add_argument("--qat-target", choices=QAT_TARGETS, default=QAT_TARGET,
                   help="what QAT fits: the HR patches, or the FP32 model's own output (default: %(default)s)")
    p.add_argument("--results", type=Path,
                   help="merge the scores into this JSON (default: results/quantize.json when shipping, else OUT_DIR/quantize.json)")
    args = p.parse_args(argv)
    if args.qat_iters < 1:
        p.error(f"--qat-iters must be at least 1, not {args.qat_iters}")
    results = args.results or (RESULTS if shipping(args.out_dir) else args.out_dir / "quantize.json")
    torch.manual_seed(0)
    try:
        data_dir = resolve_data_dir(args.data_dir)
        check_writable(args.out_dir)
        check_writable(results.parent)
        missing = [str(args.weights_dir / f"{ident}.pt") for ident in args.models
                   if not (args.weights_dir / f"{ident}.pt").is_file()]
        if missing:  # all of them before the first QAT, not after it
            raise BuildError(f"checkpoint not found: {', '.join(missing)}")
        for ident in args.models:
            started = time.time()
            made = build_model(ident, data_dir, args.out_dir, args.formats, args.qat_iters, args.weights_dir,
                               args.qat_target)
            summary = "  ".join(f"{k}: Set5 {v['quality']['Set5']['psnr']:.2f}" for k, v in made.items())
            print(f"{ident} ({time.time() - started:.0f}s)  {summary}")
            record(results, ident, made)
    except (BuildError, DataError, OutputError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
