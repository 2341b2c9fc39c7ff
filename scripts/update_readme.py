"""Write the docs' result tables from results/*.json, between <!-- table:NAME --> markers.

Every figure in the README (and in QUANTIZE.md and BENCHMARKS.md, which hold the longer notes) comes from a
file a `make` target writes; this only formats them. `--check` changes nothing and exits 1 if a doc's table
differs from what its JSON says.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from edge_runtime.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
FAMILIES = ("fsrcnn", "fsrcnn-s")
SETS = ("Set5", "Set14")
SCALES = (2, 3, 4)


def load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def evaluation_table() -> str | None:
    table = RESULTS / "evaluation.md"
    return table.read_text() if table.is_file() else None


def quantize_table() -> str | None:
    data = load("quantize.json")
    if not data:
        return None
    lines = ["| model | set | ONNX FP32 | ONNX INT8 | Δ | TFLite FP32 | TFLite INT8 | Δ |", "|---" * 8 + "|"]
    for ident, made in data.items():
        for s in SETS:
            def psnr(key):
                return made.get(key, {}).get("quality", {}).get(s, {}).get("psnr")

            cells = []
            for fmt in ("onnx", "tflite"):
                fp32, int8 = psnr(f"{fmt} fp32"), psnr(f"{fmt} int8")
                delta = f"{int8 - fp32:+.2f}" if fp32 is not None and int8 is not None else "-"
                cells += [f"{fp32:.2f}" if fp32 else "-", f"{int8:.2f}" if int8 else "-", delta]
            lines.append(f"| {ident} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stream_table() -> str | None:
    data = load("stream_targets.json")
    if not data:
        return None
    repeats = data.get("repeats", 1)
    lines = [f"Machine: `{data['machine']['device']}`, {data['machine']['platform']}, measured {data['generated']}, "
             f"{data['seconds_per_run']} s per run, {data['rows'][0]['threads']} threads, "
             f"median of {repeats} interleaved runs (all runs in brackets).", "",
             "| family | LR size | goal | contender | fps | vs OpenCV | vs FP32 ONNX | Set5 x2 PSNR |", "|---" * 8 + "|"]
    for row in data["rows"]:
        for name, r in row["results"].items():
            mark = " ✅" if r["meets_goal"] else ""
            ratio = f"{r['vs_fp32_onnx']:.2f}x" if r.get("vs_fp32_onnx") else "-"
            every = " (" + ", ".join(f"{v:.1f}" for v in r["fps_runs"]) + ")" if len(r.get("fps_runs", [])) > 1 else ""
            lines.append(f"| {row['family']} | {row['size']} | {row['goal_fps']:g} fps | {name} | {r['fps']:.1f}{mark}{every} | "
                         f"{r['vs_opencv']:.2f}x | {ratio} | {r['set5_psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def artifact_table() -> str | None:
    data = load("artifact_speed.json")
    if not data:
        return None
    kinds = sorted({k for row in data["rows"] for k in row["fps"]})
    lines = [f"Machine: `{data['machine']['device']}`. Model-only fps (ratio to FP32 ONNX in the same run).", "",
             "| model | size | threads | " + " | ".join(kinds) + " |", "|---" * (3 + len(kinds)) + "|"]
    for row in data["rows"]:
        cells = [f"{row['fps'][k]:.1f} ({row['vs_fp32_onnx'].get(k, 0):.2f}x)" if k in row["fps"] else "-" for k in kinds]
        lines.append(f"| {row['model']} | {row['size']} | {row['threads']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_table() -> str | None:
    data = load("training_speed.json")
    if not data:
        return None
    lines = [f"Machine: `{data['machine']['device']}`, {data['threads']} threads.", "",
             "| model | deconv head (LR px/s) | conv + pixel_shuffle (LR px/s) | speed-up | FSRCNN vs SRCNN inference |",
             "|---|---|---|---|---|"]
    for row in data["training"]:
        lines.append(f"| {row['model']} | {row['deconv_lr_px_s']:,} | {row['subpixel_lr_px_s']:,} | "
                     f"{row['subpixel_speedup']:.2f}x | {data['speedup_over_srcnn'].get(row['model'], '-')}x |")
    return "\n".join(lines) + "\n"


def int8_forms_table() -> str | None:
    data = load("int8_forms.json")
    if not data:
        return None
    lines = [f"Machine: `{data['machine']['device']}`, {data['rows'][0]['threads']} threads, LR {data['rows'][0]['size']}. "
             "Model-only fps (ratio to the FP32 conversion in the same run).", "",
             "| model | form | fps | vs FP32 | executed MACs / LR pixel | XNNPACK partitions | op types |", "|---" * 7 + "|"]
    for row in data["rows"]:
        for form, r in row["forms"].items():
            lines.append(f"| {row['model']} | {form} | {r['fps']:.1f} | {r['vs_fp32']:.2f}x | "
                         f"{r['executed_macs_per_lr_pixel']:,} | {r['xnnpack_partitions']} | {', '.join(r['op_types'])} |")
    return "\n".join(lines) + "\n"


def int8_layer_costs_table() -> str | None:
    data = load("int8_layer_costs.json")
    if not data:
        return None
    lines = [f"Machine: `{data['machine']['device']}`, {data['model']}, {data['threads']} threads, LR {data['size']}. "
             "Model-only, median of interleaved runs (all runs in brackets).", "",
             "| variant | fps | ms per frame | vs shipped shapes |", "|---" * 4 + "|"]
    for r in data["rows"]:
        runs = ", ".join(f"{v:.1f}" for v in r["runs"])
        lines.append(f"| {r['variant']} | {r['fps']:.1f} ({runs}) | {r['ms']:.1f} | {r['vs_shipped_shapes']:.2f}x |")
    return "\n".join(lines) + "\n"


def onnx_int8_heads_table() -> str | None:
    data = load("onnx_int8_heads.json")
    if not data:
        return None
    row0 = data["rows"][0]
    lines = [f"Machine: `{data['machine']['device']}`, {row0['threads']} threads, LR {row0['size']}. Model-only fps, "
             "median of interleaved runs (ratio to the FP32 ONNX export in the same run).", "",
             "| model | fp32 | int8, head as it is | int8, superpixel head |", "|---" * 4 + "|"]
    for row in data["rows"]:
        cells = [f"{row['forms'][k]['fps']:.1f} ({row['forms'][k]['vs_fp32']:.2f}x)"
                 for k in ("fp32", "int8", "int8, superpixel head")]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def large_photo_table() -> str | None:
    data = load("large_photo.json")
    if not data:
        return None
    lines = [f"Machine: `{data['machine']['device']}`, {data['threads']} threads, a {data['size']} photo upscaled x2 "
             "(`upscale_bgr`), each run in its own process.", "",
             "| model | in one piece | in tiles | tiles vs one piece | same output |", "|---" * 5 + "|"]
    for r in data["rows"]:
        lines.append(f"| {r['model']} | {r['whole_seconds']:.1f} s, {r['whole_peak_mb']:,} MB | {r['tiled_seconds']:.1f} s, "
                     f"{r['tiled_peak_mb']:,} MB | {r['tiled_speedup']:.2f}x as fast, {r['tiled_memory_share']:.0%} of the "
                     f"memory | {'yes' if r['same_output'] else 'no'} |")
    return "\n".join(lines) + "\n"


def self_ensemble_table() -> str | None:
    data = load("self_ensemble.json")
    if not data:
        return None
    lines = [f"Machine: `{data['machine']['device']}`, {data['threads']} threads. Y-PSNR (dB) through the real runtimes; "
             "time: the ensemble's seconds in the model over the model alone's, on the same images.", "",
             "| artifact | Set5 alone | Set5 ensemble | Δ | Set14 alone | Set14 ensemble | Δ | time |", "|---" * 8 + "|"]
    for r in data["rows"]:
        cells = [f"{r[s]['alone']:.2f} | {r[s]['ensemble']:.2f} | {r[s]['ensemble'] - r[s]['alone']:+.2f}" for s in SETS]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['time_ratio']:.1f}x |")
    return "\n".join(lines) + "\n"


TABLES = {"evaluation": evaluation_table, "quantize": quantize_table, "stream": stream_table,
          "artifacts": artifact_table, "training": training_table, "int8_forms": int8_forms_table,
          "int8_layer_costs": int8_layer_costs_table, "onnx_int8_heads": onnx_int8_heads_table,
          "large_photo": large_photo_table, "self_ensemble": self_ensemble_table}


DOCS = ("README.md", "QUANTIZE.md", "BENCHMARKS.md")


def fill_tables(text: str) -> str:
    """`text` with every table whose JSON exists rewritten between its markers."""
    for name, make in TABLES.items():
        table = make()
        if table is None:
            continue
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table:{name} -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + table + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/update_readme.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    check = p.parse_args(argv).check
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        filled = fill_tables(text)
        if filled != text:
            stale.append(doc)
            if not check:
                write_atomic(path, filled)
    if check and stale:
        print(f"tables out of date with results/*.json in {', '.join(stale)}: run scripts/update_readme.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
