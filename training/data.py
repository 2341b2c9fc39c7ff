"""Training data: HR folders -> Y -> paper augmentation -> random LR/HR patch pairs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.metrics import degrade, image_files, imresize, read_y

# The paper's augmentation: downscale by these factors (1.0 = the original) x 4 rotations.
DOWNSCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
# How patches are drawn: "pixels", every LR pixel alike (big images weigh more); "images", every augmented image alike.
WEIGHS = ("pixels", "images")


class DataError(Exception):
    """A data folder that cannot be used; the message says why and what to do."""


def resolve_data_dir(flag: str | None) -> Path:
    """The data folder from --data-dir, else $EDGE_SR_DATA."""
    value = flag or os.environ.get("EDGE_SR_DATA")
    if not value:
        raise DataError("no data folder: pass --data-dir DIR or set EDGE_SR_DATA")
    path = Path(value)
    if not path.is_dir():
        raise DataError(f"data folder not found: {path}")
    return path


def set_folder(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    try:
        image_files(folder)
    except FileNotFoundError as err:
        raise DataError(f"{err} (expected {name}/ with images inside {data_dir})") from None
    return folder


def augmented_pairs(folders: list[Path], scale: int, progress: bool = True, desc: str = "preparing",
                    downscales: tuple[float, ...] = DOWNSCALES, phases: bool = False):
    """(HR, LR) uint8 Y pairs of every training image at every `downscales` factor (rotations are the
    caller's), each made by the evaluation's own degradation. With `phases`, each is also cut 0..scale-1
    pixels from its top and left first: the scale² grids an LR pixel's footprint can sit on, where
    rotations and mirrors only ever reuse the one grid."""
    offsets = [(dy, dx) for dy in range(scale) for dx in range(scale)] if phases else [(0, 0)]
    files = [f for folder in folders for f in image_files(folder)]
    for path in tqdm(files, desc=f"{desc} x{scale} pairs", disable=not progress, unit="img"):
        y = read_y(path)
        for factor in downscales:
            sized = y if factor == 1.0 else imresize(y, factor)
            for dy, dx in offsets:
                yield degrade(sized[dy:, dx:], scale)


class PatchSampler:
    """Random (LR, HR) patch pairs from every augmented version of every training image.

    All pairs live in two flat uint8 tensors on `device`; a batch is one gather per side, so a GPU
    is not left waiting on a Python loop. Rotations (and, with `transpose`, mirror images: all 8
    symmetries of the square) are applied through the gather's indices: MATLAB's bicubic kernel is
    symmetric, so turning or mirroring a patch pair equals cutting it from the turned image pair.
    """

    def __init__(self, folders: list[Path], scale: int, lr_patch: int, seed: int = 0, progress: bool = True,
                 device: str | torch.device = "cpu", weigh: str = "pixels", transpose: bool = False,
                 downscales: tuple[float, ...] = DOWNSCALES, phases: bool = False, context: int = 0):
        self.scale, self.lr_patch, self.context, self.device = scale, lr_patch, context, torch.device(device)
        self.poses = 8 if transpose else 4
        hr_parts, lr_parts, shapes = [], [], []
        for hr, lr in augmented_pairs(folders, scale, progress, downscales=downscales, phases=phases):
            if min(lr.shape) < lr_patch + 2 * context:
                continue
            hr_parts.append(hr.ravel())
            lr_parts.append(lr.ravel())
            shapes.append(lr.shape)
        if not shapes:
            raise DataError(f"no training image is at least {(lr_patch + 2 * context) * scale} px on each side")
        self.count = len(shapes)
        self.lr_h, self.lr_w = (torch.tensor(v, dtype=torch.long, device=self.device) for v in zip(*shapes))
        area = self.lr_h * self.lr_w
        self.lr_start = torch.cumsum(area, 0) - area
        self.hr_start = self.lr_start * scale * scale
        self.lr_pixels = torch.from_numpy(np.concatenate(lr_parts)).to(self.device)
        self.hr_pixels = torch.from_numpy(np.concatenate(hr_parts)).to(self.device)
        if weigh not in WEIGHS:
            raise ValueError(f"weigh must be one of {WEIGHS}, not {weigh!r}")
        share = area.double() if weigh == "pixels" else torch.ones_like(area, dtype=torch.float64)
        self.weights = share / share.sum()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator(self.device).manual_seed(seed)

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=self.device, dtype=torch.float64)

    def teach(self, upscale, progress: bool = True) -> None:
        """Store upscale(LR image) of every stored LR image, (1, 1, h, w) -> (1, 1, h*scale, w*scale) in 0..1, as a
        third patch source for taught_batch. Computed once on whole images: a costly teacher (a self-ensemble)
        costs one pass over the data instead of one per step. Patches are turned by the same gather as the
        HR side, so `upscale` must be equivariant to the 8 symmetries of the square (model.dihedral_mean is)."""
        taught = torch.empty(self.hr_pixels.shape, dtype=torch.float32, device=self.device)
        s = self.scale
        with torch.no_grad():
            for i in tqdm(range(self.count), desc=f"teaching x{s}", disable=not progress, unit="img"):
                h, w, start = int(self.lr_h[i]), int(self.lr_w[i]), int(self.lr_start[i])
                lr = self.lr_pixels[start:start + h * w].view(1, 1, h, w).float().div_(255.0)
                taught[start * s * s:(start + h * w) * s * s] = upscale(lr).reshape(-1)
        self.taught_pixels = taught

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, HR) float32 in 0..1, shapes (size, 1, p + 2c, p + 2c) and (size, 1, p*scale, p*scale), on `device`:
        the HR patch is the footprint of the LR patch's centre p x p, c = `context` pixels in from each side."""
        return self._draw(size, taught=False)[:2]

    def taught_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(LR, HR, the stored teacher output at the HR patch's place): teach() first."""
        return self._draw(size, taught=True)

    def _draw(self, size: int, taught: bool):
        p, s, c = self.lr_patch, self.scale, self.context
        k = torch.multinomial(self.weights, size, replacement=True, generator=self.generator)
        y = (self._rand(size) * (self.lr_h[k] - p - 2 * c + 1)).long()
        x = (self._rand(size) * (self.lr_w[k] - p - 2 * c + 1)).long()
        poses = (self._rand(size) * self.poses).long()
        lr = self._cut(self.lr_pixels, self.lr_start[k], self.lr_w[k], y, x, p + 2 * c, poses)
        y, x = y + c, x + c  # concentric squares: each pose turns both about the same centre
        hr = self._cut(self.hr_pixels, self.hr_start[k], self.lr_w[k] * s, y * s, x * s, p * s, poses)
        out = lr.float().div_(255.0).unsqueeze(1), hr.float().div_(255.0).unsqueeze(1)
        if taught:
            out += (self._cut(self.taught_pixels, self.hr_start[k], self.lr_w[k] * s, y * s, x * s, p * s, poses).unsqueeze(1),)
        return out

    def _cut(self, pixels, start, width, y, x, side: int, poses) -> torch.Tensor:
        """Patches of side `side` at (y, x), each read as np.rot90(patch, pose) for pose 0..3 and
        np.rot90(patch.T, pose - 4) for 4..7: one gather."""
        i = torch.arange(side, device=self.device)
        row, col = i.view(1, -1, 1).expand(len(y), side, side), i.view(1, 1, -1).expand(len(y), side, side)
        flip_row, flip_col = side - 1 - row, side - 1 - col
        t = (poses % 4).view(-1, 1, 1)
        # np.rot90 by t: out[r, c] = in[c, -1-r], in[-1-r, -1-c], in[-1-c, r] for t = 1, 2, 3.
        src_row = torch.where(t == 0, row, torch.where(t == 1, col, torch.where(t == 2, flip_row, flip_col)))
        src_col = torch.where(t == 0, col, torch.where(t == 1, flip_row, torch.where(t == 2, flip_col, row)))
        mirrored = (poses >= 4).view(-1, 1, 1)  # rot90 of the transpose reads in[c', r'] where rot90 reads in[r', c']
        src_row, src_col = torch.where(mirrored, src_col, src_row), torch.where(mirrored, src_row, src_col)
        index = start.view(-1, 1, 1) + (y.view(-1, 1, 1) + src_row) * width.view(-1, 1, 1) + x.view(-1, 1, 1) + src_col
        return pixels[index]
