"""Greedy weight soup: average checkpoints fine-tuned from one start, keeping each only if validation holds.

Wortsman et al., "Model soups" (ICML 2022): fine-tunes of one model that start from the same weights
stay in one basin, so the mean of their weights can score above each of them, at no cost at inference.
The greedy recipe ranks the ingredients by their validation PSNR, starts from the best and adds each
next one only if the uniform average does not score lower, so a soup never falls below its best
ingredient. Ingredients must share one architecture, scale and head padding.

    python -m training.soup training/ingredients/fsrcnn_x4/*.pt --out runs/soup/fsrcnn_x4.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from edge_runtime.files import OutputError, check_writable, sha256
from edge_runtime.metrics import evaluate_set, load_eval_set
from training.data import DataError, resolve_data_dir, set_folder
from training.evaluate import torch_upscaler
from training.model import FSRCNN, CheckpointError, load_weights, save_weights
from training.train import use_threads

KEPT_FROM_INGREDIENT = ("train_sets", "transpose")  # what QAT (quantize.build) reads to repeat the recipe


def average_states(states: list[dict]) -> dict:
    """The uniform mean of state dicts with the same keys and shapes."""
    return {key: sum(state[key] for state in states) / len(states) for key in states[0]}


def load_ingredients(paths: list[Path]) -> list[tuple[Path, FSRCNN]]:
    models = [(path, load_weights(path)) for path in paths]
    first_path, first = models[0]
    for path, model in models[1:]:
        if model.config != first.config:
            raise CheckpointError(f"{path} is {model.config}, but {first_path} is {first.config}: "
                                  "a soup needs one architecture, scale and head padding")
    return models


def greedy_soup(models: list[tuple[Path, FSRCNN]], score) -> tuple[FSRCNN, float, list[dict]]:
    """Rank by `score(model)`, then add each ingredient whose inclusion keeps the mean's score from dropping.
    Returns the soup, its score and one record per ingredient, in the order tried."""
    ranked = sorted(((score(model), path, model) for path, model in models), key=lambda item: -item[0])
    best, leader_path, soup = ranked[0]
    kept = [soup.state_dict()]
    steps = [{"ingredient": str(leader_path), "psnr": round(best, 4), "kept": True, "soup_psnr": round(best, 4)}]
    for alone, path, model in tqdm(ranked[1:], desc="greedy soup", unit="ingredient"):
        trial = FSRCNN(soup.config).eval()
        trial.load_state_dict(average_states(kept + [model.state_dict()]))
        mixed = score(trial)
        keep = mixed >= best
        if keep:
            kept.append(model.state_dict())
            soup, best = trial, mixed
        steps.append({"ingredient": str(path), "psnr": round(alone, 4), "kept": keep, "soup_psnr": round(mixed, 4)})
    return soup, best, steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="two or more edge-sr checkpoints (.pt with its .json) of one model")
    p.add_argument("--out", required=True, help="the soup's .pt (its .json is written beside it); may be an ingredient")
    p.add_argument("--data-dir", help="the data folder (default: $EDGE_SR_DATA)")
    p.add_argument("--val-set", default="Set5", help="the set that ranks and admits ingredients (default Set5)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    unique: dict[Path, Path] = {}  # one entry per file, however its path is spelled
    for checkpoint in args.checkpoints:
        unique.setdefault(Path(checkpoint).resolve(), Path(checkpoint))
    paths = list(unique.values())
    if len(paths) < 2:
        p.error("a soup needs at least two different checkpoints")
    if not args.out.endswith(".pt"):
        p.error(f"--out must name a .pt file, not {args.out}")
    use_threads(p, args.threads)
    try:
        models = load_ingredients(paths)
        digests = {str(path): sha256(path) for path in paths}  # before the soup may overwrite one of them
        metas = {str(path): json.loads(path.with_suffix(".json").read_text()) for path in paths}
        scale = models[0][1].config.scale
        val_pairs = load_eval_set(set_folder(resolve_data_dir(args.data_dir), args.val_set), scale)
        check_writable(Path(args.out).parent)
    except (DataError, CheckpointError, OutputError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2

    def score(model: FSRCNN) -> float:
        return evaluate_set(torch_upscaler(model), val_pairs, scale)["psnr"]

    try:
        soup, best, steps = greedy_soup(models, score)
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted; nothing was written", file=sys.stderr)
        return 130
    for step in steps:
        step["sha256"] = digests[step["ingredient"]]
        print(f"{'kept   ' if step['kept'] else 'dropped'} {step['ingredient']}: alone {step['psnr']:.4f}, "
              f"soup {step['soup_psnr']:.4f} dB on {args.val_set}")
    leader = metas[steps[0]["ingredient"]]
    meta = {key: leader[key] for key in KEPT_FROM_INGREDIENT if key in leader}
    meta.update(val_set=args.val_set, val_psnr=round(best, 4), soup=steps)
    save_weights(soup, args.out, meta)
    print(f"wrote {args.out}: {sum(s['kept'] for s in steps)} of {len(steps)} ingredients, {args.val_set} {best:.4f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
