"""Combined fps/PSNR table of the newest report from every Pi under reports/<host>/<timestamp>/."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def newest_reports(root: Path) -> dict[str, dict]:
    reports = {}
    for host in sorted(p for p in root.iterdir() if p.is_dir()):
        stamps = sorted(d for d in host.iterdir() if (d / "report.json").is_file())
        if stamps:
            reports[host.name] = json.loads((stamps[-1] / "report.json").read_text())
    return reports


def table(reports: dict[str, dict]) -> str:
    lines = ["| host | model | size | threads | fps | vs target | PSNR |", "|---|---|---|---|---|---|---|"]
    for host, report in reports.items():
        for entry in report["results"]:
            psnr = next(iter(entry["quality"].values()))["psnr"]
            for s in entry["speed"]:
                lines.append(f"| {host} | {entry['name']} | {s['size']} | {s['threads']} | {s['fps']:.1f} | "
                             f"{s['verdict']} | {psnr:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "reports")
    if not root.is_dir():
        print(f"fleet_table: no reports folder {root}", file=sys.stderr)
        sys.exit(2)
    print(table(newest_reports(root)))
