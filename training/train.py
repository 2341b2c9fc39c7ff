"""Train FSRCNN / FSRCNN-s, read top to bottom.

    python -m training.train --model fsrcnn --scale 3 --iters 200000
    python -m training.train --model fsrcnn --scale 2 --init-from training/weights/fsrcnn_x3.pt --train-only deconv
    torchrun --nproc_per_node 4 -m training.train ...      # same script, DistributedDataParallel

Runs resume from runs/<id>/last.pt with --resume. The best-by-validation weights are written to
runs/<id>/best.pt (+ .json) whenever validation PSNR improves, and to --out-dir/<id>.pt (+ .json) while they
also beat the weights already there, so that a short or fresh run never replaces better ones.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edge_runtime.files import OutputError, check_writable, sha256
from edge_runtime.metrics import evaluate_set, load_eval_set
from training.data import DOWNSCALES, WEIGHS, DataError, PatchSampler, resolve_data_dir, set_folder
from training.model import (DECONV_PAD, TRAIN_PAD, CheckpointError, FSRCNN, crop_border, dihedral_mean, expand_layers,
                            load_weights, model_id, preset, receptive_radius, repad_deconv, save_weights, upscale_image)

LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss}

# LR patch side per scale (HR = scale x this); larger than the paper's 10/7/6 so border
# effects weigh less, same cost per pixel.
LR_PATCH = {2: 16, 3: 16, 4: 12}


def option(default, help: str):
    """A config field and the --help line of its flag (parse_args adds the default)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    model: str = option("fsrcnn", "preset: fsrcnn (d=56, s=12, m=4) or fsrcnn-s (32, 5, 1)")
    scale: int = option(3, "upscaling factor: 2, 3 or 4")
    data_dir: str | None = option(None, "folder holding the image sets (default: $EDGE_SR_DATA)")
    train_sets: list[str] = option(["T91", "BSD200"], "training image folders inside --data-dir")
    val_set: str = option("Set5", "validation folder; its PSNR picks the checkpoint kept")
    # Issue 2 counts a target only if the output rounded to whole grey levels (every frame the runtime writes)
    # meets it too; pf42's raw pick scored 30.826 raw but 30.818 rounded.
    pick_rounded: bool = option(False, "score --val-set by the lower of its raw PSNR and its PSNR after rounding "
                                       "the output to whole grey levels (the log's val_psnr is that score)")
    # To see whether what --val-set picks holds elsewhere (pf40: padding-free FSRCNN x4 gained on Set5, lost on Set14).
    watch_sets: list[str] = option([], "further validation folders, scored and logged beside --val-set at each "
                                       "validation, never used to pick")
    # "pixels": BSD200 (481x321) gives 85% of patches, T91 15%. "images": T91 31%; +0.02 dB on Set5 in a CPU
    # trial (TRAINING.md).
    weigh: str = option("pixels", "how patches are shared out: by pixels or by images")
    # All 8 symmetries of the square: twice the distinct patches from T91's 91 images (the paper rotates only).
    transpose: bool = option(False, "add mirror images to the paper's 4 rotations")
    phases: bool = option(False, "also make each training image's LR on the other scale^2 - 1 pixel grids "
                                 "(the image cut 1..scale-1 px from its top and left)")
    downscales: list[float] = option(list(DOWNSCALES), "the sizes each training image is used at, as factors of its "
                                                        "own (MATLAB bicubic; 1: as it is)")
    iters: int = option(100_000, "training steps; the cosine schedule spans them (or --minutes, whichever ends first)")
    minutes: float = option(0.0, "wall-clock budget the schedule spans; 0: none")
    batch: int = option(64, "patches per step")
    lr_patch: int = option(0, "LR patch side; 0: " + ", ".join(f"{side} at x{s}" for s, side in LR_PATCH.items()))
    # The paper trains on padding-free sub-images. Zero padding otherwise reaches most of a 16x16 patch (FSRCNN x3
    # reads 7 LR pixels around), so the layers learn zero-padded borders instead of images (ctx39, TRAINING.md).
    padding_free: bool = option(False, "read the model's receptive radius of real image around each patch and "
                                       "score only the patch (model.receptive_radius); the model then meets an "
                                       "image's borders mirrored (model.upscale_image). A padding-free "
                                       "--init-from stays so")
    # Linear over-parameterisation (model.WeightProduct): the deployed model is unchanged.
    expand: int = option(1, "train every layer as two, through this many times its channels, multiplied back "
                            "into the one layer when saved; 1: as it is")
    lr: float = option(2e-3, "peak learning rate")
    deconv_lr_mult: float = option(0.1, "the deconvolution's rate over the rest (the paper's 0.1)")
    min_lr_ratio: float = option(0.01, "cosine decay floor, as a share of --lr")
    ema: float = option(0.0, "decay of a moving average of the weights, validated and saved instead; 0: none "
                             "(the log's raw_psnr scores the trained weights as val_psnr does)")
    optimizer: str = option("adam", "adam or sgd (momentum 0.9)")
    # Zhao et al. (IEEE TCI 2017) found L1 reaches a higher PSNR than MSE itself. Here it ended under its MSE
    # twins on FSRCNN-s x3 and FSRCNN x4 (TRAINING.md, loss27, twin27); the shipped FSRCNN x4 was fine-tuned with it.
    loss: str = option("mse", "training loss: mse (the paper's) or l1")
    # Distillation: loss = (1 - w) * loss(HR) + w * loss(teacher's output).
    teacher: str | None = option(None, "a trained checkpoint of the same scale (e.g. FSRCNN for FSRCNN-s) "
                                       "whose output is a second target")
    teacher_weight: float = option(0.5, "weight w of the teacher's target, in (0, 1]")
    # The self-ensemble (model.dihedral_mean) scores +0.17 dB on Set5 for FSRCNN; computing it once on the whole
    # training images rather than per patch also lets a model be taught by its own ensemble.
    teacher_ensemble: bool = option(False, "teach with the teacher's x8 self-ensemble, computed once")
    eval_every: int = option(2000, "steps between validations (and resume points)")
    init_from: str | None = option(None, "checkpoint to start from: its body always, its head too at the same scale")
    deconv_pad: int = option(0, "the head's padding (model.FSRCNNConfig.deconv_pad); 0: the --init-from "
                                "checkpoint's at this scale, else model.TRAIN_PAD")
    train_only: str = option("all", "all, or deconv: freeze everything but the deconvolution (scale transfer)")
    run_dir: str = option("runs", "log.csv and the resume point go to RUN_DIR/<id>/")
    out_dir: str = option("training/weights", "the best weights by validation go to OUT_DIR/<id>.pt (+ .json) while they "
                                              "beat the weights already there (always to RUN_DIR/<id>/best.pt)")
    resume: bool = option(False, "continue from RUN_DIR/<id>/last.pt")
    seed: int = option(0, "seeds the initialisation and the patch draws")
    threads: int = option(0, "torch CPU threads; 0: torch's default")


PROG = "python -m training.train"  # how usage lines and errors name the command: the way it is run


def parse_args(argv: list[str] | None = None, config_type=TrainConfig, doc: str | None = __doc__, prog: str = PROG):
    """A flag per field of the dataclass `config_type` (--lr-patch for lr_patch), its default and help the field's."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = config_type()
    for f in fields(config_type):
        flag, value, text = "--" + f.name.replace("_", "-"), getattr(defaults, f.name), f.metadata["help"]
        if isinstance(value, bool):  # --flag / --no-flag
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=text)
        elif isinstance(value, list):
            kind = type(value[0]) if value else str  # an empty default holds names (--watch-sets)
            shown = " ".join(map(str, value)) or "none"
            p.add_argument(flag, nargs="+", type=kind, default=value, help=f"{text} (default: {shown})",
                           metavar="NAME" if kind is str else kind.__name__.upper())
        else:
            shown = "" if value in (None, "") else f" (default: {value})"
            p.add_argument(flag, type=type(value) if value is not None else str, default=value, help=text + shown)
    return config_type(**vars(p.parse_args(argv)))


def use_threads(parser: argparse.ArgumentParser, threads: int) -> None:
    """A CLI's --threads: 0 leaves torch's default, a negative count is a usage error (exit 2)."""
    if threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, not {threads}")
    if threads:
        torch.set_num_threads(threads)


def check_run_settings(cfg) -> None:
    """One-line errors for settings no run can use, before any data is read (TrainConfig and JointConfig);
    an unwritable run or output folder fails now, not at the first save."""
    for flag, value in (("--iters", cfg.iters), ("--batch", cfg.batch), ("--eval-every", cfg.eval_every)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, not {value}")
    if not cfg.lr > 0:
        raise ValueError(f"--lr must be positive, not {cfg.lr}")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"--min-lr-ratio must be in [0, 1], not {cfg.min_lr_ratio}")
    if not cfg.minutes >= 0:
        raise ValueError(f"--minutes must be 0 (no budget) or more, not {cfg.minutes}")
    if cfg.threads < 0:
        raise ValueError(f"--threads must be 0 (torch's default) or more, not {cfg.threads}")
    if cfg.init_from and not Path(cfg.init_from).is_file():
        raise CheckpointError(f"checkpoint not found: {cfg.init_from}")
    check_writable(cfg.run_dir)
    check_writable(cfg.out_dir)


def check_config(cfg: TrainConfig) -> None:
    """check_run_settings, and the choices only train.py has."""
    check_run_settings(cfg)
    preset(cfg.model, cfg.scale, cfg.deconv_pad or TRAIN_PAD.get(cfg.scale, DECONV_PAD))  # model, scale, padding
    choices = (("--weigh", cfg.weigh, WEIGHS), ("--loss", cfg.loss, sorted(LOSSES)),
               ("--optimizer", cfg.optimizer, ("adam", "sgd")), ("--train-only", cfg.train_only, ("all", "deconv")))
    for flag, value, allowed in choices:
        if value not in allowed:
            raise ValueError(f"{flag} must be one of {', '.join(allowed)}; not {value!r}")
    if cfg.lr_patch < 0:
        raise ValueError(f"--lr-patch must be 0 (by scale) or more, not {cfg.lr_patch}")
    if not 0.0 < cfg.teacher_weight <= 1.0:
        raise ValueError(f"--teacher-weight must be in (0, 1], not {cfg.teacher_weight}")
    if cfg.teacher_ensemble and cfg.teacher is None:
        raise ValueError("--teacher-ensemble needs --teacher MODEL.pt")
    if cfg.expand < 1:
        raise ValueError(f"--expand must be 1 (none) or more, not {cfg.expand}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"--ema must be a decay in [0, 1), not {cfg.ema}")
    if not all(0.0 < factor <= 1.0 for factor in cfg.downscales):
        raise ValueError(f"--downscales must be factors in (0, 1], not {' '.join(map(str, cfg.downscales))}")


def schedule_progress(cfg: TrainConfig, step: int, seconds: float) -> float:
    """0 -> 1 over the run: by steps, or by the wall-clock budget when that is nearer its end."""
    progress = step / max(cfg.iters, 1)
    if cfg.minutes > 0:
        progress = max(progress, seconds / (60 * cfg.minutes))
    return min(progress, 1.0)


class ScheduleBar:
    """The run's progress bar, in percent of its schedule (steps or wall clock, whichever ends it first), so its
    time left holds for a --minutes run too; the step count and speed ride in its postfix, renewed at each validation."""

    def __init__(self, desc: str, progress: float, step: int, enabled: bool = True):
        self.bar = tqdm(total=100, initial=round(100 * progress, 1), desc=desc, disable=not enabled,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
                        mininterval=0.5 if sys.stderr.isatty() else 60)
        self.first_step, self.step, self.fields = step, step, {}

    def advance(self, progress: float, step: int) -> None:
        self.step = step
        self.bar.update(round(100 * progress, 1) - self.bar.n)

    def show(self, **fields) -> None:
        """The step, steps per second so far in this process, and `fields` (the latest validation)."""
        self.fields.update(fields)
        seconds = self.bar.format_dict["elapsed"]
        rate = f"{(self.step - self.first_step) / seconds:.1f}it/s" if seconds > 0 else "-"
        self.bar.set_postfix({"step": self.step, "speed": rate, **self.fields})

    def close(self) -> None:
        self.bar.close()


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


def validate(model: FSRCNN, pairs, scale: int, rounded: bool = False) -> float:
    """Mean PSNR over the pairs; with `rounded`, the lower of raw and rounded-to-uint8 (--pick-rounded)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        def upscale(lr: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None].to(device)
            return upscale_image(model, x)[0, 0].cpu().numpy() * 255.0

        result = evaluate_set(upscale, pairs, scale)
    model.train()
    return min(result["psnr"], result["psnr_uint8"]) if rounded else result["psnr"]


def head_padding(cfg: TrainConfig, source: FSRCNN | None) -> int:
    """--deconv-pad if given; else a fine-tune keeps its checkpoint's head, and anything else gets TRAIN_PAD."""
    if cfg.deconv_pad:
        return cfg.deconv_pad
    return source.config.deconv_pad if source is not None and source.config.scale == cfg.scale else TRAIN_PAD[cfg.scale]


def build_model(cfg: TrainConfig) -> FSRCNN:
    source = load_weights(cfg.init_from) if cfg.init_from else None
    pad = head_padding(cfg, source)
    config = preset(cfg.model, cfg.scale, pad)
    if cfg.padding_free or (source is not None and source.config.border):
        config = replace(config, border=receptive_radius(config))
    model = FSRCNN(config)
    if source is not None:
        if source.config.d != model.config.d or source.config.s != model.config.s:
            raise CheckpointError(f"{cfg.init_from}: {source.config} does not match {cfg.model}")
        model.body.load_state_dict(source.body.state_dict())
        if source.config.scale == cfg.scale:
            model.deconv.load_state_dict({"weight": repad_deconv(source.deconv.weight, source.config.deconv_pad, pad),
                                          "bias": source.deconv.bias})
    if cfg.expand > 1:
        expand_layers(model, cfg.expand)
    if cfg.train_only == "deconv":
        model.body.requires_grad_(False)
    return model


def load_teacher(cfg: TrainConfig, device: torch.device) -> FSRCNN | None:
    """The frozen --teacher in its fast training form, or None; its scale must be the student's."""
    if cfg.teacher is None:
        return None
    teacher = load_weights(cfg.teacher, expect_scale=cfg.scale).to(device).requires_grad_(False)
    teacher.subpixel_head = True
    return teacher


def patch_context(cfg: TrainConfig, model: FSRCNN, teacher: FSRCNN | None) -> int:
    """LR pixels of real image read around each training patch: none for a zero-padded model; a padding-free
    model's border, widened to a per-step teacher's reach, whose output on the patch must not read zeros either
    (FSRCNN teaching FSRCNN-s: 7 against 4 at x3). --teacher-ensemble teaches from whole images instead."""
    if not model.config.border:
        return 0
    if teacher is None or cfg.teacher_ensemble:
        return model.config.border
    return max(model.config.border, receptive_radius(teacher.config))


def whole_image_teacher(teacher: FSRCNN):
    """--teacher-ensemble's upscaler, run once per training image: the teacher's x8 self-ensemble, each pass
    meeting the image's borders as the teacher was trained to (mirrored, for a padding-free one)."""
    return lambda lr: dihedral_mean(partial(upscale_image, teacher), lr)


def make_optimizer(cfg: TrainConfig, model: FSRCNN) -> torch.optim.Optimizer:
    groups = [{"params": list(model.deconv.parameters()), "lr_mult": cfg.deconv_lr_mult}]
    body = [p for p in model.body.parameters() if p.requires_grad]
    if body:
        groups.append({"params": body, "lr_mult": 1.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.Adam(groups, lr=cfg.lr)


class BestWeights:
    """Where a run's best weights go: RUN/<id>/best.pt each time validation improves, and OUT_DIR/<id>.pt only
    while they beat the weights already there (scored on the validation set when the run starts or resumes).
    The default OUT_DIR holds the shipped weights: a quick or fresh run must not replace them with worse ones."""

    def __init__(self, run: Path, out_path: Path, pairs, scale: int, device: torch.device, rounded: bool = False):
        self.run_path, self.out_path = run / "best.pt", out_path
        self.to_beat = -math.inf
        if out_path.is_file():
            try:
                self.to_beat = validate(load_weights(out_path, expect_scale=scale).to(device), pairs, scale, rounded)
            except CheckpointError:  # damaged or foreign: nothing there worth keeping
                pass
        self.written = False

    def save(self, model: FSRCNN, val: float, meta: dict) -> None:
        save_weights(model, self.run_path, meta)
        if val > self.to_beat:
            save_weights(model, self.out_path, meta)
            self.to_beat, self.written = val, True

    def outcome(self, best: float, val_set: str) -> str:
        """The run's last line: its best, and where it went."""
        if self.written:
            return f"best {val_set} PSNR {best:.3f} dB, written to {self.out_path}"
        if self.run_path.is_file():
            return (f"best {val_set} PSNR {best:.3f} dB, in {self.run_path}; {self.out_path} kept: it scores "
                    f"{self.to_beat:.3f} dB")
        return f"best {val_set} PSNR {best:.3f} dB: no better than the start, nothing written"


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
    check_config(cfg)
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
    init_digest = sha256(cfg.init_from) if cfg.init_from else None  # the file may be overwritten by this run
    model = build_model(cfg).to(device)  # before the data: a bad --init-from fails at once, not after the pairs

    data_dir = resolve_data_dir(cfg.data_dir)
    folders = [set_folder(data_dir, name) for name in cfg.train_sets]
    val_pairs = load_eval_set(set_folder(data_dir, cfg.val_set), cfg.scale)
    watched = {name: load_eval_set(set_folder(data_dir, name), cfg.scale) for name in cfg.watch_sets}
    sampler = PatchSampler(folders, cfg.scale, cfg.lr_patch or LR_PATCH[cfg.scale], seed=cfg.seed + rank,
                           progress=is_main, device=device, weigh=cfg.weigh, transpose=cfg.transpose,
                           downscales=tuple(cfg.downscales), phases=cfg.phases, context=patch_context(cfg, model, teacher))
    if cfg.teacher_ensemble:
        sampler.teach(whole_image_teacher(teacher), progress=is_main)

    ident = model_id(cfg.model, cfg.scale)
    run = Path(cfg.run_dir) / ident
    run.mkdir(parents=True, exist_ok=True)
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
    elif cfg.resume and is_main:  # `make train-x3` always asks: the first time there is nothing yet
        print(f"{ident}: nothing to resume in {run}, starting at step 0")
    model.subpixel_head = True
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)) if cfg.ema else None
    if ema is not None and state is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    scored = ema.module if ema is not None else model  # what is validated and saved
    if cfg.init_from and step == 0 and is_main:  # a fine-tune's best must beat where it starts
        best = validate(model, val_pairs, cfg.scale, cfg.pick_rounded)
        print(f"{ident}: starting from {cfg.init_from}, {cfg.val_set} {best:.3f} dB")
    keeper = BestWeights(run, Path(cfg.out_dir) / f"{ident}.pt", val_pairs, cfg.scale, device,
                         cfg.pick_rounded) if is_main else None
    edge = sampler.context * cfg.scale  # what the loss leaves out of each output patch (--padding-free)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    log_path = run / "log.csv"
    new_log = not log_path.exists() or step == 0
    log = open(log_path, "w" if new_log else "a", newline="") if is_main else None
    writer = csv.writer(log) if log else None
    if writer and new_log:
        writer.writerow(["step", "loss", "val_psnr", "lr", "seconds"] + (["raw_psnr"] if ema is not None else [])
                        + [f"{name}_psnr" for name in watched])
    start, running, running_steps = time.time() - trained_seconds, torch.zeros((), device=device), 0
    try:
        progress = schedule_progress(cfg, step, trained_seconds)
        bar = ScheduleBar(ident, progress, step, enabled=is_main)
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
                        taught = crop_border(teacher(lr_batch), edge)
            sr_batch = crop_border(net(lr_batch), edge)
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
            progress = schedule_progress(cfg, step, elapsed(start, distributed, device))
            bar.advance(progress, step)
            if is_main and (step % cfg.eval_every == 0 or progress >= 1.0):
                val = validate(scored, val_pairs, cfg.scale, cfg.pick_rounded)
                extra = ([f"{validate(model, val_pairs, cfg.scale, cfg.pick_rounded):.4f}"] if ema is not None else []) + [
                    f"{validate(scored, pairs, cfg.scale):.4f}" for pairs in watched.values()]
                mean_loss = running.item() / running_steps
                running.zero_()
                running_steps = 0
                writer.writerow([step, f"{mean_loss:.6e}", f"{val:.4f}", f"{lr_now:.3e}", f"{time.time() - start:.0f}"] + extra)
                log.flush()
                if val > best:
                    best = val
                    keeper.save(scored, val,
                                {"step": step, "val_set": cfg.val_set, "val_psnr": round(val, 4),
                                 "pick_rounded": cfg.pick_rounded,
                                 "train_sets": cfg.train_sets, "weigh": cfg.weigh, "transpose": cfg.transpose,
                                 "phases": cfg.phases, "padding_free": bool(model.config.border), "downscales": cfg.downscales, "ema": cfg.ema, "loss": cfg.loss,
                                 **({"expand": cfg.expand} if cfg.expand > 1 else {}),
                                 **({"teacher": cfg.teacher, "teacher_sha256": teacher_digest, "teacher_weight": cfg.teacher_weight,
                                    "teacher_ensemble": cfg.teacher_ensemble} if teacher is not None else {}),
                                 "init_from": cfg.init_from, "init_from_sha256": init_digest,
                                 "train_only": cfg.train_only,
                                 "trained_on": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"})
                save_resume_point(run, model, ema, optimizer, step, best, time.time() - start)
                bar.show(loss=f"{mean_loss:.2e}", set5=f"{val:.2f}", best=f"{best:.2f}")
    except KeyboardInterrupt:
        if is_main:  # keep every finished step: --resume continues from here
            save_resume_point(run, model, ema, optimizer, step, best, time.time() - start)
        raise
    bar.close()
    if log:
        log.close()
    if keeper is not None:
        print(keeper.outcome(best, cfg.val_set))
    if distributed:
        dist.barrier()  # rank 0 may still be validating; leave together so no rank tears gloo down early
        dist.destroy_process_group()
    return best


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        train(cfg)
    except (DataError, CheckpointError, OutputError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; resume with --resume", file=sys.stderr)
        return 130
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
