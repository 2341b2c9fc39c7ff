"""Copy image folders keeping only what training reads, the BT.601 Y plane, at a third of the size.

    python scripts/pack_y_dataset.py ../shared/datasets .data T91 BSD200 Set5

Used to carry the training sets to a lent GPU machine, where the working tree that travels is
size-capped. Each copy is a grey PNG whose grey levels are chosen so that `read_y` of the copy
equals `read_y` of the original, pixel for pixel (checked for every file).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_runtime.files import write_atomic  # noqa: E402
from edge_runtime.metrics import image_files, read_y, rgb_to_y  # noqa: E402


def grey_for_y() -> np.ndarray:
    """grey[y] = a grey level whose Y is y (read_y converts a grey PNG to Y through BT.601's offset and gain)."""
    levels = np.arange(256, dtype=np.uint8)
    y_of_grey = rgb_to_y(np.repeat(levels[:, None], 3, axis=1)[None])[0]
    grey = np.full(256, -1, dtype=np.int16)
    for level, y in zip(levels[::-1], y_of_grey[::-1]):
        grey[y] = level
    return grey


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/pack_y_dataset.py", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="the datasets folder (for example ../shared/datasets)")
    parser.add_argument("dst", help="where the Y-only copies go")
    parser.add_argument("names", nargs="+", help="the image folders under src to copy (T91, BSD200, Set5)")
    args = parser.parse_args(argv)
    grey = grey_for_y()
    for name in args.names:
        try:
            files = image_files(Path(args.src) / name)
        except FileNotFoundError as err:
            parser.error(str(err))
        out = Path(args.dst) / name
        out.mkdir(parents=True, exist_ok=True)
        for path in files:
            y = read_y(path)
            if (grey[y] < 0).any():
                raise SystemExit(f"{path}: a Y level has no grey level")
            target = out / (path.stem + ".png")
            write_atomic(target, cv2.imencode(".png", grey[y].astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes())
            if not np.array_equal(read_y(target), y):
                raise SystemExit(f"{target}: read_y differs from the original's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
