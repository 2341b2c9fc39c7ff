"""The one place that defines image quality for edge-sr (numpy + OpenCV only).

Training, quantization and the edge runtime all import this module, so a PSNR
printed by any stage means the same thing: the FSRCNN paper's protocol of
BT.601 Y (16-235), modcrop, MATLAB-style bicubic LR and a `scale`-pixel shave.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# ITU-R BT.601 "studio swing" (MATLAB rgb2ycbcr), rows: Y, Cb, Cr; inputs in 0..255.
RGB_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
) / 255.0
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (0..255, any dtype) -> float64 YCbCr, Y in 16..235."""
    return rgb.astype(np.float64) @ RGB_TO_YCBCR.T + YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """HxWx3 YCbCr (float) -> RGB uint8, rounded and clipped."""
    rgb = (ycbcr.astype(np.float64) - YCBCR_OFFSET) @ YCBCR_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """RGB (or greyscale, taken as R=G=B) -> Y channel as uint8, as MATLAB's rgb2ycbcr."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    y = rgb.astype(np.float64) @ RGB_TO_YCBCR[0] + YCBCR_OFFSET[0]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of `scale` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5, as MATLAB's imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per output sample: input indices and weights (MATLAB imresize, antialiased when shrinking)."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - indices
    weights = scale * _cubic(dist * scale) if antialias else _cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    # Mirror-symmetric boundary, as MATLAB: [1..n, n..1] repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    indices, weights = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    shape = (out_len,) + (1,) * (moved.ndim - 1)
    out = np.zeros((out_len,) + moved.shape[1:])
    for tap in range(indices.shape[1]):  # one tap at a time keeps memory at the output's size
        out += weights[:, tap].reshape(shape) * moved[indices[:, tap]]
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize(img, scale)` with the bicubic kernel.

    uint8 in -> uint8 out (rounded), float in -> float64 out. One factor for both
    axes, so MATLAB's order (rows first) applies.
    """
    h, w = img.shape[:2]
    out_h, out_w = int(np.ceil(h * scale)), int(np.ceil(w * scale))
    out = img.astype(np.float64)
    for axis in (0, 1):
        out = _resize_axis(out, axis, out_h if axis == 0 else out_w, scale)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def psnr(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR in dB of two Y images on the 0..255 scale, `border` pixels shaved."""
    diff = shave(sr.astype(np.float64), border) - shave(hr.astype(np.float64), border)
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, valid region only."""
    x = shave(sr.astype(np.float64), border)
    y = shave(hr.astype(np.float64), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T

    def filt(a: np.ndarray) -> np.ndarray:
        return cv2.filter2D(a, -1, window)[5:-5, 5:-5]

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


def degrade(hr_y: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """HR Y -> (modcropped HR, MATLAB-bicubic LR), both uint8: the protocol's test pair."""
    hr = modcrop(hr_y, scale)
    return hr, imresize(hr, 1.0 / scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline every SR figure is compared with (float, unrounded: the datasets README's figures)."""
    return imresize(lr.astype(np.float64), float(scale))


IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def read_y(path) -> np.ndarray:
    """An image file -> its BT.601 Y channel (uint8). Raises ValueError if unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return rgb_to_y(bgr[..., ::-1])


def image_files(folder) -> list:
    from pathlib import Path

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def load_eval_set(folder, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR Y, LR Y) for every image in `folder`, under the paper's protocol."""
    return [(p.stem, *degrade(read_y(p), scale)) for p in image_files(folder)]


def evaluate_set(upscale, pairs, scale: int) -> dict:
    """Mean Y-PSNR/SSIM of `upscale(lr_uint8) -> float HR` over (name, hr, lr) pairs.

    `psnr` scores the output as it comes; `psnr_uint8` scores it rounded to whole grey levels first, as the
    FSRCNN paper's test code does (`uint8(im_h * 255)`) and as every frame the runtime writes is."""
    rows = []
    for name, hr, lr in pairs:
        sr = np.clip(np.asarray(upscale(lr), dtype=np.float64), 0, 255)
        if sr.shape != hr.shape:
            raise ValueError(f"{name}: output {sr.shape} != expected {hr.shape}")
        rows.append({"image": name, "psnr": psnr(sr, hr, scale), "psnr_uint8": psnr(np.rint(sr), hr, scale),
                     "ssim": ssim(sr, hr, scale)})
    return {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "psnr_uint8", "ssim")} | {"images": rows}
