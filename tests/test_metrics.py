import cv2
import numpy as np
import pytest

from edge_runtime import metrics as M

# Bicubic Y-PSNR under the paper's protocol (../shared/datasets/README.md).
SET5_BICUBIC = {2: 33.67, 3: 30.39, 4: 28.42}
SET14_BICUBIC = {2: 30.33, 3: 27.64, 4: 26.10}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_baseline_reproduces_published_set5_and_set14_psnr(data_dir, scale):
    for name, expected in (("Set5", SET5_BICUBIC), ("Set14", SET14_BICUBIC)):
        pairs = M.load_eval_set(data_dir / name, scale)
        result = M.evaluate_set(lambda lr: M.bicubic_upscale(lr, scale), pairs, scale)
        assert abs(result["psnr"] - expected[scale]) <= 0.02, (name, result["psnr"])


def test_imresize_keeps_constant_images_constant_and_sizes_exact():
    img = np.full((30, 45), 77, np.uint8)
    small = M.imresize(img, 1 / 3)
    assert small.shape == (10, 15) and np.all(small == 77)
    assert M.imresize(small, 3.0).shape == (30, 45)


def test_imresize_downscale_is_antialiased():
    stripes = np.tile(np.array([0, 255], np.uint8), (16, 8))  # 1-pixel vertical stripes
    small = M.imresize(stripes, 0.5)
    assert np.ptp(small[:, 2:-2]) < 10  # averaged to mid-grey away from the mirrored border, not aliased


def test_y_conversion_is_bt601_studio_swing():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    assert M.rgb_to_y(rgb).tolist() == [[16, 235, 81]]
    ycbcr = M.rgb_to_ycbcr(rgb)
    assert np.abs(M.ycbcr_to_rgb(ycbcr).astype(int) - rgb).max() <= 1


def test_psnr_and_ssim_of_identical_images_are_perfect_and_drop_with_noise():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 64)).astype(np.uint8), (0, 0), 3)
    assert M.psnr(img, img, 2) == float("inf")
    assert M.ssim(img, img, 2) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 5, img.shape), 0, 255)
    assert 30 < M.psnr(noisy, img, 2) < 40
    assert M.ssim(noisy, img, 2) < 0.99


def test_evaluate_set_also_scores_the_output_rounded_to_whole_grey_levels_as_the_papers_code():
    rng = np.random.default_rng(1)
    hr = rng.integers(10, 200, (40, 40)).astype(np.uint8)
    pairs = [("flat", hr, hr[::2, ::2])]
    result = M.evaluate_set(lambda lr: hr + 0.6, pairs, 2)  # rounds to one grey level off everywhere
    assert result["psnr"] == pytest.approx(10 * np.log10(255**2 / 0.36))
    assert result["psnr_uint8"] == pytest.approx(10 * np.log10(255**2 / 1.0))
    assert result["images"][0]["psnr_uint8"] == result["psnr_uint8"]


def test_modcrop_and_degrade_give_matching_sizes():
    hr, lr = M.degrade(np.zeros((101, 77), np.uint8), 3)
    assert hr.shape == (99, 75) and lr.shape == (33, 25)
