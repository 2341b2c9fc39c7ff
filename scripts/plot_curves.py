"""results/validation_curves.svg: Set5 validation PSNR of each model against its training steps, all its
runs chained, from the training logs copied to results/training_logs/ (one CSV per run: step,loss,
val_psnr,lr,seconds)."""
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
          "xfer25", "xfer25a", "joint26", "l1-27", "kd28"]


def phases() -> list[str]:
    found = {log.stem.split("_", 1)[0] for log in LOGS.glob("*_*.csv")}
    return PHASES + sorted(found - set(PHASES))


COLORS = ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#6a4c93", "#1982c4", "#8ac926"]


def collect(runs: Path) -> None:
    """Copy runs/**/log.csv to results/training_logs/<phase>_<id>.csv (runs/ itself is not tracked)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    for log in runs.rglob("log.csv"):
        rel = log.parent.relative_to(runs)
        name = "_".join(rel.parts) if len(rel.parts) > 1 else f"scratch_{rel.parts[0]}"
        shutil.copyfile(log, LOGS / f"{name}.csv")


def svg(curves: dict[str, list[tuple[int, float]]], width=760, height=420) -> str:
    pad = 56
    steps = [s for c in curves.values() for s, _ in c]
    values = [v for c in curves.values() for _, v in c]
    lo, hi, top = min(values) - 0.1, max(values) + 0.1, max(steps)

    def x(step):
        return pad + (width - 2 * pad - 150) * step / top

    def y(value):
        return height - pad - (height - 2 * pad) * (value - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad - 150}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<text x="{(width - 150) / 2}" y="{height - 16}" text-anchor="middle">training step (all runs of a model, chained)</text>',
             f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">Set5 PSNR (dB)</text>']
    for tick in range(int(lo) + 1, int(hi) + 1):
        parts.append(f'<text x="{pad - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>'
                     f'<line x1="{pad}" y1="{y(tick):.1f}" x2="{width - pad - 150}" y2="{y(tick):.1f}" stroke="#eee"/>')
    parts.append(f'<text x="{width - pad - 150}" y="{height - pad + 16}" text-anchor="end">{top}</text>')
    for i, (name, points) in enumerate(sorted(curves.items())):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{width - pad - 140}" y="{pad + 16 * i}" fill="{color}">{name} (best {max(v for _, v in points):.2f})</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="scripts/plot_curves.py", description=__doc__).parse_args(argv)  # --help; no options
    runs = ROOT / "runs"
    if runs.is_dir():
        collect(runs)
    curves = {}
    for phase in phases():  # each model's runs chained in the order they ran, steps counted on
        for log in sorted(LOGS.glob(f"{phase}_*.csv")):
            ident = log.stem[len(phase) + 1:]
            points = curves.setdefault(ident, [])
            offset = points[-1][0] if points else 0
            points += [(offset + int(r["step"]), float(r["val_psnr"])) for r in csv.DictReader(log.open())]
    if not curves:
        print("plot_curves: no training logs", file=sys.stderr)
        return 2
    out = ROOT / "results" / "validation_curves.svg"
    write_atomic(out, svg(curves))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
