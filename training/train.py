"""Train FSRCNN / FSRCNN-s, read top to bottom.

    python -m training.train --model fsrcnn --scale 3 --iters 200000
    python -m training.train --model fsrcnn --scale 2 --init-from training/weights/fsrcnn_x3.pt --train-only deconv
    torchrun --nproc_per_node 4 -m training.train ...      # same script, DistributedDataParallel

Runs resume from runs/<id>/last.pt with --resume; the best-by-validation weights are written to
--out-dir/<id>.pt (+ .json) whenever validation PSNR improves.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edge_runtime.files import sha256
from edge_runtime.metrics import evaluate_set, load_eval_set
from training.data import WEIGHS, DataError, PatchSampler, resolve_data_dir, set_folder
from training.model import DECONV_PAD, TRAIN_PAD, CheckpointError, FSRCNN, dihedral_mean, load_weights, model_id, preset, repad_deconv, save_weights

LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}

# LR patch side per scale (HR = scale x this); larger than the paper's 10/7/6 so border
# effects weigh less, same cost per pixel.
LR_PATCH = {2: 16, 3: 16, 4: 12}


@dataclass
class TrainConfig:
    model: str = "fsrcnn"
    scale: int = 3
    data_dir: str | None = None
    train_sets: list[str] = field(default_factory=lambda: ["T91", "BSD200"])
    val_set: str = "Set5"
    # data.WEIGHS. "pixels": BSD200 (481x321) gives 85% of patches, T91 15%. "images": T91 31%;
    # +0.02 dB on Set5 in a CPU trial (TRAINING.md).
    weigh: str = "pixels"
    # Mirror images on top of the paper's 4 rotations: all 8 symmetries of the square, twice the
    # distinct patches from T91's 91 images (the paper rotates only).
    transpose: bool = False
    iters: int = 100_000
    minutes: float = 0.0  # wall-clock budget of this run; 0: none. The schedule ends at iters or here, first
    batch: int = 64
    lr_patch: int = 0  # 0: LR_PATCH[scale]
    lr: float = 2e-3
    deconv_lr_mult: float = 0.1  # the paper's smaller rate for the last layer
    min_lr_ratio: float = 0.01  # cosine decay floor
    # Decay of an exponential moving average of the weights (0: none). When set, the average is what is
    # validated and saved, and the log's raw_psnr column scores the trained weights themselves.
    ema: float = 0.0
    optimizer: str = "adam"
    # "mse", the paper's; or "l1", which Zhao et al. (IEEE TCI 2017) found to reach a higher PSNR than MSE
    # itself. Here it ended under its MSE twins on FSRCNN-s x3 and FSRCNN x4 (TRAINING.md, loss27, twin27); the shipped
    # FSRCNN x4 was fine-tuned with it.
    loss: str = "mse"
    # Distillation: a larger trained model of the same scale (FSRCNN for FSRCNN-s) whose output on each
    # patch is a second target, weighted by teacher_weight: loss = (1 - w) * loss(HR) + w * loss(teacher).
    teacher: str | None = None
    teacher_weight: float = 0.5
    # Teach with the teacher's self-ensemble (model.dihedral_mean: +0.17 dB on Set5 for FSRCNN), computed once on
    # the whole training images rather than per patch; so a model can also be taught by its own ensemble.
    teacher_ensemble: bool = False
    eval_every: int = 2000
    init_from: str | None = None  # transfer: copy the body (conv layers) from another scale
    # model.FSRCNNConfig.deconv_pad. 0: the --init-from checkpoint's at this scale, else model.TRAIN_PAD
    deconv_pad: int = 0
    train_only: str = "all"  # "deconv": freeze everything but the deconvolution
    run_dir: str = "runs"
    out_dir: str = "training/weights"
    resume: bool = False
    seed: int = 0
    threads: int = 0  # 0: torch's default


def parse_args(argv: list[str] | None = None, config_type=TrainConfig, doc: str | None = __doc__):
    """A flag per field of the dataclass `config_type` (--lr-patch for lr_patch), its default the field's."""
    defaults = config_type()
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            p.add_argument(flag, nargs="+", default=value)
        else:
            kind = type(value) if value is not None else str
            p.add_argument(flag, type=kind, default=value)
    return config_type(**vars(p.parse_args(argv)))


def schedule_progress(cfg: TrainConfig, step: int, seconds: float) -> float:
    """0 -> 1 over the run: by steps, or by the wall-clock budget when that is nearer its end."""
    progress = step / max(cfg.iters, 1)
    if cfg.minutes > 0:
        progress = max(progress, seconds / (60 * cfg.minutes))
    return min(progress, 1.0)


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def elapsed(start: float, distributed: bool, device: torch.device) -> float:
    """Seconds since `start`; under torchrun the slowest rank's, so every rank ends on the same step."""
    seconds = time.time() - start
    if distributed:
        t = torch.tensor(seconds, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        seconds = t.item()
    return seconds


def cosine_lr(cfg: TrainConfig, progress: float) -> float:
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def validate(model: FSRCNN, pairs, scale: int) -> float:
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        def upscale(lr: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None].to(device)
            return model(x)[0, 0].cpu().numpy() * 255.0

        result = evaluate_set(upscale, pairs, scale)
    model.train()
    return result["psnr"]


def head_padding(cfg: TrainConfig, source: FSRCNN | None) -> int:
    """--deconv-pad if given; else a fine-tune keeps its checkpoint's head, and anything else gets TRAIN_PAD."""
    if cfg.deconv_pad:
        return cfg.deconv_pad
    return source.config.deconv_pad if source is not None and source.config.scale == cfg.scale else TRAIN_PAD[cfg.scale]


def build_model(cfg: TrainConfig) -> FSRCNN:
    source = load_weights(cfg.init_from) if cfg.init_from else None
    pad = head_padding(cfg, source)
    model = FSRCNN(preset(cfg.model, cfg.scale, pad))
    if source is not None:
        if source.config.d != model.config.d or source.config.s != model.config.s:
            raise CheckpointError(f"{cfg.init_from}: {source.config} does not match {cfg.model}")
        model.body.load_state_dict(source.body.state_dict())
        if source.config.scale == cfg.scale:
            model.deconv.load_state_dict({"weight": repad_deconv(source.deconv.weight, source.config.deconv_pad, pad),
                                          "bias": source.deconv.bias})
    if cfg.train_only == "deconv":
        model.body.requires_grad_(False)
    elif cfg.train_only != "all":
        raise ValueError(f"--train-only must be 'all' or 'deconv', not {cfg.train_only!r}")
    return model


def load_teacher(cfg: TrainConfig, device: torch.device) -> FSRCNN | None:
    """The frozen --teacher in its fast training form, or None; its scale must be the student's."""
    if cfg.teacher is None:
        return None
    teacher = load_weights(cfg.teacher, expect_scale=cfg.scale).to(device).requires_grad_(False)
    teacher.subpixel_head = True
    return teacher


def make_optimizer(cfg: TrainConfig, model: FSRCNN) -> torch.optim.Optimizer:
    groups = [{"params": list(model.deconv.parameters()), "lr_mult": cfg.deconv_lr_mult}]
    body = [p for p in model.body.parameters() if p.requires_grad]
    if body:
        groups.append({"params": body, "lr_mult": 1.0})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    raise ValueError(f"--optimizer must be 'adam' or 'sgd', not {cfg.optimizer!r}")


def save_resume_point(run: Path, model: FSRCNN, ema: AveragedModel | None, optimizer, step: int, best: float,
                      seconds: float) -> None:
    """runs/<id>/last.pt: weights, their moving average, optimizer state, step, best PSNR, head padding and the
    seconds trained so far (a --minutes schedule resumes where it stopped), written atomically."""
    tmp = run / "last.pt.tmp"
    torch.save({"model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "step": step, "best_psnr": best,
                "deconv_pad": model.config.deconv_pad, "seconds": seconds}, tmp)
    os.replace(tmp, run / "last.pt")


def train(cfg: TrainConfig) -> float:
    preset(cfg.model, cfg.scale, cfg.deconv_pad or TRAIN_PAD.get(cfg.scale, DECONV_PAD))  # reject a bad model/scale/weigh before loading any data
    if cfg.weigh not in WEIGHS:
        raise ValueError(f"--weigh must be one of {WEIGHS}, not {cfg.weigh!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"--loss must be one of {sorted(LOSSES)}, not {cfg.loss!r}")
    if not 0.0 < cfg.teacher_weight <= 1.0:
        raise ValueError(f"--teacher-weight must be in (0, 1], not {cfg.teacher_weight}")
    if cfg.teacher_ensemble and cfg.teacher is None:
        raise ValueError("--teacher-ensemble needs --teacher MODEL.pt")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"--ema must be a decay in [0, 1), not {cfg.ema}")
    distributed = under_torchrun()
    rank = 0
    if distributed:  # launched by torchrun: one process per GPU (or CPU worker)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels
    torch.backends.cudnn.allow_tf32 = False  # full FP32, as on CPU: a 37 dB model is fine-grained
    teacher = load_teacher(cfg, device)  # before seeding: its construction must not shift the student's init
    teacher_digest = sha256(cfg.teacher) if teacher is not None else None
    torch.manual_seed(cfg.seed)
    is_main = rank == 0

    data_dir = resolve_data_dir(cfg.data_dir)
    folders = [set_folder(data_dir, name) for name in cfg.train_sets]
    val_pairs = load_eval_set(set_folder(data_dir, cfg.val_set), cfg.scale)
    sampler = PatchSampler(folders, cfg.scale, cfg.lr_patch or LR_PATCH[cfg.scale], seed=cfg.seed + rank,
                           progress=is_main, device=device, weigh=cfg.weigh, transpose=cfg.transpose)
    if cfg.teacher_ensemble:
        sampler.teach(lambda lr: dihedral_mean(teacher, lr), progress=is_main)

    ident = model_id(cfg.model, cfg.scale)
    run = Path(cfg.run_dir) / ident
    run.mkdir(parents=True, exist_ok=True)
    init_digest = sha256(cfg.init_from) if cfg.init_from else None  # the file may be overwritten by this run
    model = build_model(cfg).to(device)
    optimizer = make_optimizer(cfg, model)
    step, best, trained_seconds, state = 0, -math.inf, 0.0, None
    if cfg.resume and (run / "last.pt").is_file():
        state = torch.load(run / "last.pt", map_location=device, weights_only=True)
        saved_pad = state.get("deconv_pad", DECONV_PAD)
        if saved_pad != model.config.deconv_pad:  # the same shapes, another head: refuse rather than mix
            raise CheckpointError(f"{run / 'last.pt'} has a padding-{saved_pad} head; resume with --deconv-pad {saved_pad}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best, trained_seconds = state["step"], state["best_psnr"], state.get("seconds", 0.0)
        sampler.reseed(cfg.seed + rank + step)
        if is_main:
            print(f"resumed {ident} at step {step}, best {cfg.val_set} {best:.3f} dB")
    model.subpixel_head = True
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)) if cfg.ema else None
    if ema is not None and state is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    scored = ema.module if ema is not None else model  # what is validated and saved
    if cfg.init_from and step == 0 and is_main:
        # Fine-tuning must beat where it starts before it may overwrite the shipped weights.
        best = validate(model, val_pairs, cfg.scale)
        print(f"{ident}: starting from {cfg.init_from}, {cfg.val_set} {best:.3f} dB")
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    log_path = run / "log.csv"
    new_log = not log_path.exists() or step == 0
    log = open(log_path, "w" if new_log else "a", newline="") if is_main else None
    writer = csv.writer(log) if log else None
    if writer and new_log:
        writer.writerow(["step", "loss", "val_psnr", "lr", "seconds"] + (["raw_psnr"] if ema is not None else []))
    start, running, running_steps = time.time() - trained_seconds, torch.zeros((), device=device), 0
    bar = tqdm(total=cfg.iters, initial=step, desc=ident, disable=not is_main, unit="it",
               mininterval=0.5 if sys.stderr.isatty() else 60)
    try:
        progress = schedule_progress(cfg, step, trained_seconds)
        while progress < 1.0:
            lr_now = cosine_lr(cfg, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr_now * group["lr_mult"]
            if cfg.teacher_ensemble:
                lr_batch, hr_batch, taught = sampler.taught_batch(cfg.batch)
            else:
                lr_batch, hr_batch = sampler.batch(cfg.batch)
                taught = None
                if teacher is not None:
                    with torch.no_grad():
                        taught = teacher(lr_batch)
            sr_batch = net(lr_batch)
            loss = LOSSES[cfg.loss](sr_batch, hr_batch)
            if taught is not None:
                loss = (1 - cfg.teacher_weight) * loss + cfg.teacher_weight * LOSSES[cfg.loss](sr_batch, taught)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running += loss.detach()  # no .item() per step: a GPU keeps queueing work
            running_steps += 1
            bar.update(1)
            progress = schedule_progress(cfg, step, elapsed(start, distributed, device))
            if is_main and (step % cfg.eval_every == 0 or progress >= 1.0):
                val = validate(scored, val_pairs, cfg.scale)
                raw = [f"{validate(model, val_pairs, cfg.scale):.4f}"] if ema is not None else []
                mean_loss = running.item() / running_steps
                running.zero_()
                running_steps = 0
                writer.writerow([step, f"{mean_loss:.6e}", f"{val:.4f}", f"{lr_now:.3e}", f"{time.time() - start:.0f}"] + raw)
                log.flush()
                if val > best:
                    best = val
                    save_weights(scored, Path(cfg.out_dir) / f"{ident}.pt",
                                 {"step": step, "val_set": cfg.val_set, "val_psnr": round(val, 4),
                                  "train_sets": cfg.train_sets, "weigh": cfg.weigh, "transpose": cfg.transpose, "ema": cfg.ema, "loss": cfg.loss,
                                  **({"teacher": cfg.teacher, "teacher_sha256": teacher_digest, "teacher_weight": cfg.teacher_weight,
                                     "teacher_ensemble": cfg.teacher_ensemble} if teacher is not None else {}),
                                  "init_from": cfg.init_from, "init_from_sha256": init_digest,
                                  "train_only": cfg.train_only,
                                  "trained_on": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"})
                save_resume_point(run, model, ema, optimizer, step, best, time.time() - start)
                bar.set_postfix(loss=f"{mean_loss:.2e}", set5=f"{val:.2f}", best=f"{best:.2f}")
    except KeyboardInterrupt:
        if is_main:  # keep every finished step: --resume continues from here
            save_resume_point(run, model, ema, optimizer, step, best, time.time() - start)
        raise
    bar.close()
    if log:
        log.close()
    if distributed:
        dist.barrier()  # rank 0 may still be validating; leave together so no rank tears gloo down early
        dist.destroy_process_group()
    return best


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        best = train(cfg)
    except (DataError, CheckpointError, ValueError) as err:
        print(f"edge-sr train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-sr train: interrupted; resume with --resume", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(f"best {cfg.val_set} PSNR {best:.3f} dB")
    return 0


if __name__ == "__main__":
    code = main()
    if under_torchrun():
        # A gloo worker thread may drop its last finished collective (holding a Python tensor) while the
        # interpreter shuts down; taking the GIL then aborts the rank ("terminate called without an active
        # exception", torch 2.13, about 1 run in 30 on 2 busy cores). Logs and weights are closed by now,
        # so a torchrun worker ends without interpreter teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
