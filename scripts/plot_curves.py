"""results/validation_curves.svg: Set5 validation PSNR of each model against the training patches it has seen,
all its runs chained, one panel per model with its issue-2 target, from the training logs copied to
results/training_logs/ (one CSV per run: step,loss,val_psnr,lr,seconds)."""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from edge_runtime.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "results" / "training_logs"
# The training phases in the order they ran (TRAINING.md): x3 from scratch, x2/x4 transfer (deconvolution,
# then all layers), GPU continuations of all six (scripts/train_on_gpu.sh RUN=gpuN), a CPU fine-tune on T91
# alone (runs/t91/<id>), then more GPU runs on T91, then CPU fine-tunes of FSRCNN x2 and x4 (runs/cpu7/<id>),
# then of both x3 models into the centred head (runs/align9/<id>, --deconv-pad 3), then of FSRCNN-s x3 and x4
# with mirror images (runs/mirror10/<id>, --transpose), then of FSRCNN-s x2 the same way
# (runs/mirror11/<id>) and of FSRCNN x4 (runs/mirror12/<id>; its x2 run was not shipped, log in results/controls),
# then of both x3 models (runs/mirror13/<id>), then of FSRCNN-s x3 and x4 again (runs/mirror14/<id>),
# then of FSRCNN x3 and FSRCNN-s x4 again (runs/mirror17/<id>), then of both x3 models once more (runs/mirror18/<id>;
# its FSRCNN-s x3 weights shipped a session later, under QAT recipe 8), then both x2 models transferred again from
# those x3 bodies (runs/xfer25/<id>: the deconvolution alone, then runs/xfer25a/<id>: all layers).
# Phases not listed (a user's own runs) chain on after these.
PHASES = ["scratch", "deconv", "all", "gpu1", "gpu2", "gpu3", "gpu4", "t91", "gpu5", "gpu6", "cpu7", "align9", "mirror10",
          "mirror11", "mirror12", "mirror13", "mirror14", "mirror17", "mirror18",
          "xfer25", "xfer25a", "joint26", "l1-27", "kd28", "ctx39", "pf40", "kd41", "pf42", "kd42", "pf43", "kd43", "kd44", "kd45",
          "kd46", "kd47", "pf47", "kd48", "kd49", "kd51", "ov52", "ov53", "ov54", "ov55", "ov57", "ov58", "ov59", "ov60", "ov62", "ov64",
          "ov66", "ov67"]


def phases() -> list[str]:
    found = {log.stem.split("_", 1)[0] for log in LOGS.glob("*_*.csv")}
    return PHASES + sorted(found - set(PHASES))


def collect(runs: Path) -> None:
    """Copy runs/**/log.csv to results/training_logs/<phase>_<id>.csv (runs/ itself is not tracked)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    for log in runs.rglob("log.csv"):
        rel = log.parent.relative_to(runs)
        name = "_".join(rel.parts) if len(rel.parts) > 1 else f"scratch_{rel.parts[0]}"
        shutil.copyfile(log, LOGS / f"{name}.csv")


# Patches per step where a run's batch was not the CPU's 64 (TRAINING.md's table), so that each curve's x axis
# counts training patches seen: the GPU runs took 4 to 16 times the CPU's batch, FSRCNN x3's two-thread CPU runs 4
# times, FSRCNN x4's padding-free runs a quarter of it (LR patches of 24, not 12).
BATCH = {"gpu1": 256, "gpu2": 256, "gpu3": 512, "gpu4": 1024, "gpu5": 512, "gpu6": 512, "ov62": 256, "ov64": 256,
         "ov66": 256, "ov67": 256, "pf40": 16, "pf42": 16, "pf43": 16, "pf47": 16}
CPU_BATCH = 64
# Issue 2's Set5 targets, drawn as each panel's dashed line.
SET5_TARGETS = {"fsrcnn_x2": 37.10, "fsrcnn_x3": 33.28, "fsrcnn_x4": 30.82,
                "fsrcnn-s_x2": 36.70, "fsrcnn-s_x3": 32.75, "fsrcnn-s_x4": 30.25}
PANEL_DB = 1.0  # each panel's height in dB, ending just over its target or best
WIDTH, PANEL_W, PANEL_H, LEFT, TOP, GAP = 960, 250, 170, 60, 74, 48


def tick_step(right: float) -> float:
    """The x axis's tick spacing: the smallest 1, 2 or 5 x 10^k patches that cuts it into at most 5 intervals."""
    step = 1.0
    while right / step > 5:
        step *= 2.5 if f"{step:.0f}"[0] == "2" else 2
    return step


def patches_label(count: float) -> str:
    return f"{count / 1e6:g}M" if count >= 1e6 else f"{count / 1e3:g}k" if count >= 1e3 else f"{count:g}"


def svg(curves: dict[str, list[tuple[float, float, str]]]) -> str:
    """One panel per model (rows by family, columns by scale): Set5 PSNR against training patches seen,
    GPU runs shaded, the target dashed; each panel spans PANEL_DB dB, so a restart's first evaluations fall below it."""
    names = sorted(curves, key=lambda n: (n.startswith("fsrcnn-s"), n))
    columns = 3
    rows = -(-len(names) // columns)
    height = TOP + rows * (PANEL_H + GAP) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">Set5 PSNR (dB) during training, '
             'all runs of each model chained; x: training patches</text>',
             f'<text x="{WIDTH / 2}" y="40" text-anchor="middle" fill="#555">shaded: runs on a lent H200 GPU; '
             'dashed: the Set5 target of issue 2</text>']
    for i, name in enumerate(names):
        points = curves[name]
        ox = LEFT + (i % columns) * (PANEL_W + GAP + 14)
        oy = TOP + (i // columns) * (PANEL_H + GAP)
        best = max(v for _, v, _ in points)
        target = SET5_TARGETS.get(name)
        hi = max(best, target or best) + 0.1
        lo = hi - PANEL_DB
        right = max(p for p, _, _ in points)

        def x(patches):
            return ox + PANEL_W * patches / right

        def y(value):
            return oy + PANEL_H * (hi - value) / (hi - lo)

        clip = f"panel{i}"
        parts.append(f'<clipPath id="{clip}"><rect x="{ox}" y="{oy}" width="{PANEL_W}" height="{PANEL_H}"/></clipPath>')
        spans, start = [], 0.0  # the GPU runs' stretches of the x axis
        for (p0, _, run0), (_, _, run1) in zip(points, points[1:] + [(right, 0.0, "")]):
            if run1 != run0:
                if run0.startswith("gpu"):
                    spans.append((start, p0))
                start = p0
        for a, b in spans:
            parts.append(f'<rect x="{x(a):.1f}" y="{oy}" width="{max(x(b) - x(a), 0.5):.1f}" height="{PANEL_H}" fill="#eef3f8"/>')
        for k in range(int(lo * 5) + 1, int(hi * 5) + 1):  # a grid line every 0.2 dB
            parts.append(f'<line x1="{ox}" y1="{y(k / 5):.1f}" x2="{ox + PANEL_W}" y2="{y(k / 5):.1f}" stroke="#eee"/>'
                         f'<text x="{ox - 5}" y="{y(k / 5) + 4:.1f}" text-anchor="end">{k / 5:.1f}</text>')
        step = tick_step(right)
        for k in range(int(right // step) + 1):  # a grid line and a label every `step` patches
            parts.append(f'<line x1="{x(k * step):.1f}" y1="{oy}" x2="{x(k * step):.1f}" y2="{oy + PANEL_H}" stroke="#eee"/>'
                         f'<text x="{x(k * step):.1f}" y="{oy + PANEL_H + 14}" text-anchor="middle">{patches_label(k * step)}</text>')
        parts.append(f'<rect x="{ox}" y="{oy}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>')
        if target is not None:
            parts.append(f'<line x1="{ox}" y1="{y(target):.1f}" x2="{ox + PANEL_W}" y2="{y(target):.1f}" '
                         f'stroke="#c0392b" stroke-dasharray="5,3"/>')
        path = " ".join(f"{x(p):.1f},{y(v):.1f}" for p, v, _ in points)
        parts.append(f'<polyline clip-path="url(#{clip})" fill="none" stroke="#264653" stroke-width="1.2" points="{path}"/>')
        goal = f", target {target:.2f}" if target is not None else ""
        parts.append(f'<text x="{ox}" y="{oy - 6}" font-size="12">{name}: best {best:.3f}{goal}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="scripts/plot_curves.py", description=__doc__).parse_args(argv)  # --help; no options
    runs = ROOT / "runs"
    if runs.is_dir():
        collect(runs)
    curves = {}
    for phase in phases():  # each model's runs chained in the order they ran, patches counted on
        batch = BATCH.get(phase, CPU_BATCH)
        for log in sorted(LOGS.glob(f"{phase}_*.csv")):
            ident = log.stem[len(phase) + 1:]
            points = curves.setdefault(ident, [])
            offset = points[-1][0] if points else 0
            points += [(offset + int(r["step"]) * batch, float(r["val_psnr"]), phase) for r in csv.DictReader(log.open())]
    if not curves:
        print("plot_curves: no training logs", file=sys.stderr)
        return 2
    out = ROOT / "results" / "validation_curves.svg"
    write_atomic(out, svg(curves))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
