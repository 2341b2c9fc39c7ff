"""PSNR/SSIM of checkpoints on test folders against bicubic, under the paper's protocol.

    python -m training.evaluate                          # every shipped checkpoint, Set5 + Set14
    python -m training.evaluate runs/x.pt --sets Set5     # one checkpoint
    python -m training.evaluate --json results/evaluation.json --markdown results/evaluation.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from edge_runtime.files import sha256, write_atomic, write_json
from edge_runtime.metrics import bicubic_upscale, evaluate_set, load_eval_set
from training.data import DataError, resolve_data_dir, set_folder
from training.model import PRESETS, SCALES, CheckpointError, load_weights, model_id, upscale_image

WEIGHTS_DIR = Path(__file__).parent / "weights"


def shipped_checkpoints() -> list[Path]:
    """Shipped weights in pipeline order: fsrcnn_x2 ... fsrcnn-s_x4."""
    paths = [WEIGHTS_DIR / f"{model_id(name, scale)}.pt" for name in PRESETS for scale in SCALES]
    return [p for p in paths if p.is_file()]


def torch_upscaler(model):
    def upscale(lr: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None]
            return upscale_image(model, x)[0, 0].numpy().astype(np.float64) * 255.0

    return upscale


def scores_of(upscale, pairs, scale: int) -> dict:
    scores = evaluate_set(upscale, pairs, scale)
    return {"psnr": round(scores["psnr"], 3), "psnr_uint8": round(scores["psnr_uint8"], 3),
            "ssim": round(scores["ssim"], 4)}


def evaluate(checkpoints: dict[str, Path], data_dir: Path, sets: list[str]) -> dict:
    """{"bicubic": {set: {scale: scores}}, "models": {label: {set: scores}}} for {label: checkpoint}, where scores
    are scores_of's psnr, psnr_uint8 and ssim."""
    pairs_cache: dict[tuple[str, int], list] = {}

    def pairs(name: str, scale: int):
        if (name, scale) not in pairs_cache:
            pairs_cache[name, scale] = load_eval_set(set_folder(data_dir, name), scale)
        return pairs_cache[name, scale]

    result: dict = {"bicubic": {}, "models": {}}
    for label, path in checkpoints.items():
        model = load_weights(path)
        scale = model.config.scale
        entry = {"checkpoint": path.name, "checkpoint_sha256": sha256(path), "scale": scale, "config": model.config.to_dict()}
        for name in sets:
            entry[name] = scores_of(torch_upscaler(model), pairs(name, scale), scale)
            bicubic = result["bicubic"].setdefault(name, {})
            if str(scale) not in bicubic:
                bicubic[str(scale)] = scores_of(lambda lr: bicubic_upscale(lr, scale), pairs(name, scale), scale)
        result["models"][label] = entry
    return result


def cell(scores: dict | None) -> str:
    return f"{scores['psnr']:.3f} / {scores['ssim']:.4f}" if scores else "-"


def uint8_cell(scores: dict | None) -> str:
    return f"{scores['psnr_uint8']:.3f}" if scores else "-"


def markdown_table(result: dict, sets: list[str]) -> str:
    """The shipped weights: rows bicubic and each model family, 'PSNR / SSIM', each followed by its PSNR with
    the output rounded to uint8 (the paper's test code); columns set x scale."""
    header = "| model | " + " | ".join(f"{s} x{k}" for s in sets for k in SCALES) + " |"
    lines = [header, "|---" * (1 + len(sets) * len(SCALES)) + "|"]
    rows = {"bicubic": [result["bicubic"].get(s, {}).get(str(k)) for s in sets for k in SCALES]}
    for name in PRESETS:
        rows[name] = [result["models"].get(model_id(name, k), {}).get(s) for s in sets for k in SCALES]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(map(cell, scores)) + " |")
        lines.append(f"| {name}, output rounded to uint8 | " + " | ".join(map(uint8_cell, scores)) + " |")
    return "\n".join(lines) + "\n"


def checkpoints_table(result: dict, sets: list[str]) -> str:
    """Checkpoints given by path: a row each, and bicubic at each of their scales; 'PSNR / SSIM' per set."""
    lines = ["| checkpoint | scale | " + " | ".join(sets) + " |", "|---" * (2 + len(sets)) + "|"]
    for label, entry in result["models"].items():
        lines.append(f"| {label} | x{entry['scale']} | " + " | ".join(cell(entry.get(s)) for s in sets) + " |")
    for scale in sorted({entry["scale"] for entry in result["models"].values()}):
        cells = [cell(result["bicubic"].get(s, {}).get(str(scale))) for s in sets]
        lines.append(f"| bicubic | x{scale} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="*", type=Path,
                   help="weights files, a row each (default: every shipped one, a row per model family)")
    p.add_argument("--data-dir", help="folder holding the test sets (default: $EDGE_SR_DATA)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"], help="folders inside --data-dir (default: Set5 Set14)")
    p.add_argument("--json", type=Path, help="write the full result here")
    p.add_argument("--markdown", type=Path, help="write the results table here")
    args = p.parse_args(argv)
    try:
        data_dir = resolve_data_dir(args.data_dir)
        if args.checkpoints:
            checkpoints = {str(path): path for path in args.checkpoints}  # as given: two runs' fsrcnn_x3.pt differ
        else:
            checkpoints = {path.stem: path for path in shipped_checkpoints()}
        if not checkpoints:
            raise CheckpointError(f"no checkpoints given and none shipped in {WEIGHTS_DIR}")
        result = evaluate(checkpoints, data_dir, args.sets)
    except (DataError, CheckpointError, ValueError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    table = checkpoints_table(result, args.sets) if args.checkpoints else markdown_table(result, args.sets)
    print(table, end="")
    if args.json:
        write_json(args.json, result)
    if args.markdown:
        write_atomic(args.markdown, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
