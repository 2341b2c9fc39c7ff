"""One FSRCNN body trained for x2, x3 and x4 at once: three deconvolution heads on a shared body.

    python -m training.train_joint --model fsrcnn --init-from training/weights/fsrcnn_x3.pt \\
        --heads-from runs/xfer25_best --lr 2e-4 --minutes 75 --run-dir runs/joint26 --out-dir runs/joint26_best

The paper's transfer (an x3 body, a new deconvolution) says the body is nearly scale-free. Here each
step draws a batch at every scale and descends the sum of the three log-MSEs, which is minus the sum
of the three PSNRs (over 10/ln 10): each scale weighs by how far it can still move in dB, not by the
size of its error. Each scale's best-by-validation weights are written as an ordinary
--run-dir/<id>/best.pt (+ .json), and to --out-dir/<id>.pt while they beat the weights already there (as
train.py does): the shared body and that scale's head, usable as any other checkpoint; each scale's
validation log is an ordinary --run-dir/<id>/log.csv.
"""
from __future__ import annotations

import csv
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from edge_runtime.files import OutputError, sha256
from edge_runtime.metrics import load_eval_set
from training.data import DataError, PatchSampler, resolve_data_dir, set_folder
from training.model import SCALES, TRAIN_PAD, CheckpointError, FSRCNN, load_weights, model_id, preset
from training.train import LR_PATCH, BestWeights, ScheduleBar, check_run_settings, cosine_lr, option, parse_args, schedule_progress, validate


@dataclass
class JointConfig:
    model: str = option("fsrcnn", "preset: fsrcnn or fsrcnn-s")
    init_from: str = option("", "the checkpoint whose body (and, at its own scale, head) training starts from")
    heads_from: str | None = option(None, "a folder of <id>.pt checkpoints: each scale's head comes from its file "
                                          "there, else from --init-from at its own scale, else the paper's N(0, 0.001)")
    data_dir: str | None = option(None, "folder holding the image sets (default: $EDGE_SR_DATA)")
    train_sets: list[str] = option(["T91"], "training image folders inside --data-dir")
    val_set: str = option("Set5", "validation folder; its PSNR picks each scale's checkpoint")
    transpose: bool = option(False, "add mirror images to the paper's 4 rotations (as train.py)")
    iters: int = option(100_000, "training steps; the cosine schedule spans them (or --minutes, whichever ends first)")
    minutes: float = option(0.0, "wall-clock budget the schedule spans; 0: none")
    batch: int = option(64, "patches per scale per step")
    lr: float = option(2e-4, "peak learning rate")
    deconv_lr_mult: float = option(0.1, "the deconvolutions' rate over the body's")
    min_lr_ratio: float = option(0.01, "cosine decay floor, as a share of --lr")
    eval_every: int = option(1000, "steps between validations")
    run_dir: str = option("runs", "each scale's log.csv goes to RUN_DIR/<id>/")
    out_dir: str = option("training/weights", "each scale's best weights go to OUT_DIR/<id>.pt (+ .json) while they "
                                              "beat the weights already there (always to RUN_DIR/<id>/best.pt)")
    seed: int = option(0, "seeds the patch draws")
    threads: int = option(0, "torch CPU threads; 0: torch's default")


def build_models(cfg: JointConfig) -> dict[int, FSRCNN]:
    """{scale: FSRCNN}, every one holding the same body module."""
    if not cfg.init_from:
        raise ValueError("--init-from is required: the checkpoint whose body the three heads share")
    if cfg.heads_from and not Path(cfg.heads_from).is_dir():
        raise CheckpointError(f"--heads-from folder not found: {cfg.heads_from}")
    source = load_weights(cfg.init_from)
    models = {}
    for scale in SCALES:
        head_file = Path(cfg.heads_from) / f"{model_id(cfg.model, scale)}.pt" if cfg.heads_from else None
        head = load_weights(head_file, expect_scale=scale) if head_file and head_file.is_file() else None
        if head is None and source.config.scale == scale:
            head = source
        model = FSRCNN(preset(cfg.model, scale, head.config.deconv_pad if head else TRAIN_PAD[scale]))
        for other in (source, head):
            if other is not None and (other.config.d, other.config.s, other.config.m) != (model.config.d, model.config.s, model.config.m):
                raise CheckpointError(f"{cfg.init_from if other is source else head_file}: {other.config} is not {cfg.model}")
        if head is not None:
            model.deconv.load_state_dict(head.deconv.state_dict())
        model.body = source.body
        model.subpixel_head = True  # the same function, faster to train on CPU
        models[scale] = model.train()
    return models


def train_joint(cfg: JointConfig) -> dict[int, float]:
    """Train; returns each scale's best validation PSNR."""
    check_run_settings(cfg)
    preset(cfg.model, 3)  # reject a bad model name before loading any data
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    models = build_models(cfg)
    data_dir = resolve_data_dir(cfg.data_dir)
    folders = [set_folder(data_dir, name) for name in cfg.train_sets]
    val_folder = set_folder(data_dir, cfg.val_set)
    samplers = {s: PatchSampler(folders, s, LR_PATCH[s], seed=cfg.seed + s, transpose=cfg.transpose) for s in SCALES}
    val_pairs = {s: load_eval_set(val_folder, s) for s in SCALES}

    body = models[3].body
    optimizer = torch.optim.Adam([{"params": list(body.parameters()), "lr_mult": 1.0}]
                                 + [{"params": list(m.deconv.parameters()), "lr_mult": cfg.deconv_lr_mult}
                                    for m in models.values()], lr=cfg.lr)
    best = {s: validate(m, val_pairs[s], s) for s, m in models.items()}  # a result must beat its start
    print(f"{cfg.model} joint: starting {cfg.val_set} " + ", ".join(f"x{s} {v:.3f}" for s, v in best.items()))
    provenance = {"val_set": cfg.val_set, "train_sets": cfg.train_sets, "transpose": cfg.transpose,
                  "init_from": cfg.init_from, "init_from_sha256": sha256(cfg.init_from),
                  "heads_from": cfg.heads_from, "train_only": "all", "joint_scales": list(SCALES), "trained_on": "cpu"}

    with ExitStack() as stack:  # one log per scale, in train.py's columns: runs/<run>/<id>/log.csv
        writers, keepers = {}, {}
        for s in SCALES:
            run = Path(cfg.run_dir) / model_id(cfg.model, s)
            run.mkdir(parents=True, exist_ok=True)
            keepers[s] = BestWeights(run, Path(cfg.out_dir) / f"{model_id(cfg.model, s)}.pt", val_pairs[s], s,
                                     torch.device("cpu"))
            log = stack.enter_context(open(run / "log.csv", "w", newline="", buffering=1))
            writers[s] = csv.writer(log)
            writers[s].writerow(["step", "loss", "val_psnr", "lr", "seconds"])
        start, step, running, running_steps = time.time(), 0, torch.zeros(len(SCALES)), 0
        progress = 0.0
        bar = ScheduleBar(f"{cfg.model} joint", progress, step)
        while progress < 1.0:
            lr_now = cosine_lr(cfg, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr_now * group["lr_mult"]
            losses = []
            for s in SCALES:
                lr_batch, hr_batch = samplers[s].batch(cfg.batch)
                losses.append(torch.nn.functional.mse_loss(models[s](lr_batch), hr_batch))
            optimizer.zero_grad(set_to_none=True)
            sum(torch.log(loss) for loss in losses).backward()
            optimizer.step()
            running += torch.stack([loss.detach() for loss in losses])
            running_steps += 1
            step += 1
            progress = schedule_progress(cfg, step, time.time() - start)
            bar.advance(progress, step)
            if step % cfg.eval_every == 0 or progress >= 1.0:
                vals = {s: validate(models[s], val_pairs[s], s) for s in SCALES}
                for s, mean_loss in zip(SCALES, (running / running_steps).tolist()):
                    writers[s].writerow([step, f"{mean_loss:.6e}", f"{vals[s]:.4f}", f"{lr_now:.3e}", f"{time.time() - start:.0f}"])
                running.zero_()
                running_steps = 0
                for s, val in vals.items():
                    if val > best[s]:
                        best[s] = val
                        keepers[s].save(models[s], val, {"step": step, "val_psnr": round(val, 4), **provenance})
                bar.show(**{f"x{s}": f"{v:.3f}" for s, v in vals.items()})
        bar.close()
    for s in SCALES:
        print(f"x{s}: {keepers[s].outcome(best[s], cfg.val_set)}")
    return best


PROG = "python -m training.train_joint"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv, JointConfig, __doc__, PROG)
    try:
        train_joint(cfg)
    except (DataError, CheckpointError, OutputError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; each scale's best weights so far are in --run-dir/<id>/best.pt", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
