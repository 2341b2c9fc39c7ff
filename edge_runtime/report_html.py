"""report.html for `edge-sr bench`: tables, an fps-vs-PSNR chart with the target line, stage timing bars.
Plain HTML and inline SVG: it opens anywhere, offline."""
from __future__ import annotations

import html

COLORS = {"int8": "#2a9d8f", "fp32": "#e76f51", "opencv": "#6c757d"}


def _scatter(report: dict, width: int = 640, height: int = 360) -> str:
    points = []
    for entry in report["results"]:
        psnr = next(iter(entry["quality"].values()))["psnr"]
        for s in entry["speed"]:
            points.append((s["fps"], psnr, entry, s))
    if not points:
        return ""
    target = report["target_fps"]
    max_fps = max([p[0] for p in points] + [target]) * 1.1
    lo, hi = min(p[1] for p in points) - 0.2, max(p[1] for p in points) + 0.2
    pad = 50

    def x(fps):
        return pad + (width - 2 * pad) * fps / max_fps

    def y(psnr):
        return height - pad - (height - 2 * pad) * (psnr - lo) / max(hi - lo, 1e-6)

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{x(target):.1f}" y1="{pad}" x2="{x(target):.1f}" y2="{height - pad}" stroke="red" stroke-dasharray="6 4"/>',
             f'<text x="{x(target) + 4:.1f}" y="{pad + 12}" fill="red" font-size="12">{target:g} fps</text>',
             f'<text x="{width / 2}" y="{height - 12}" font-size="12" text-anchor="middle">fps (end to end)</text>',
             f'<text x="14" y="{height / 2}" font-size="12" transform="rotate(-90 14 {height / 2})" text-anchor="middle">PSNR (dB)</text>']
    for fps, psnr, entry, s in points:
        color = COLORS["opencv"] if entry["kind"] == "opencv" else COLORS.get(entry["precision"], "#264653")
        label = html.escape(f"{entry['name']} {s['size']} t{s['threads']}: {fps:.1f} fps, {psnr:.2f} dB")
        parts.append(f'<circle cx="{x(fps):.1f}" cy="{y(psnr):.1f}" r="4" fill="{color}"><title>{label}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _stage_bars(speed: dict, scale_ms: float) -> str:
    colors = {"capture": "#8ecae6", "sr": "#219ebc", "output": "#ffb703"}
    bars = []
    for stage, ms in speed["stage_ms"].items():
        if ms:
            bars.append(f'<span title="{stage} {ms:.1f} ms" style="display:inline-block;height:10px;'
                        f'width:{max(1, 200 * ms / scale_ms):.0f}px;background:{colors.get(stage, "#999")}"></span>')
    return "".join(bars)


def render_html(report: dict) -> str:
    target = report["target_fps"]
    scale_ms = max((sum(v or 0 for v in s["stage_ms"].values()) for e in report["results"] for s in e["speed"]), default=1)
    rows = []
    for entry in report["results"]:
        quality = " ".join(f"{name} {q['psnr']:.2f} / {q['ssim']:.4f} (bicubic {q['bicubic_psnr']:.2f})"
                           for name, q in entry["quality"].items())
        for s in entry["speed"]:
            verdict = "PASS" if s["fps"] >= target else "FAIL"
            rows.append(
                f"<tr><td>{html.escape(entry['name'])}</td><td>x{entry['scale']}</td><td>{entry['precision']}</td>"
                f"<td>{entry['backend']}</td><td>{s['size']}</td><td>{s['threads']}</td><td>{s['fps']:.1f}</td>"
                f"<td class='{verdict.lower()}'>{verdict}</td><td>{html.escape(quality)}</td><td>{_stage_bars(s, scale_ms)}</td></tr>")
    machine = html.escape(", ".join(f"{k}: {v}" for k, v in report["machine"].items()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edge-sr bench</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}.pass{{color:#2a9d8f;font-weight:bold}}.fail{{color:#d62828;font-weight:bold}}</style>
</head><body>
<h1>edge-sr bench</h1>
<p>Machine: {machine}<br>edge-sr {report['edge_sr']}; {report['seconds_per_config']} s per configuration;
quality on {html.escape(str(report['quality_source']))}; target {target:g} fps.</p>
<h2>fps vs PSNR</h2>
<p>Green: INT8, orange: FP32, grey: OpenCV dnn_superres. Red line: the target.</p>
{_scatter(report)}
<h2>All configurations</h2>
<p>Stage bars: capture (light blue), SR (blue), output (yellow), mean ms per frame.</p>
<table><tr><th>model</th><th>scale</th><th>precision</th><th>backend</th><th>size</th><th>threads</th><th>fps</th>
<th>vs {target:g}</th><th>PSNR / SSIM</th><th>stages</th></tr>
{''.join(rows)}
</table></body></html>
"""
