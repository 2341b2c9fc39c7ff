"""edge-sr used as a library: open a shipped model, hand it a BGR image, get the upscaled BGR image."""
import subprocess
import textwrap

import cv2
import numpy as np
import pytest

from conftest import PYTHON, ROOT, textured_image
from edge_runtime import metrics
from edge_runtime.backends import load_upscaler
from edge_runtime.errors import BackendError
from edge_runtime.models import MODELS_DIR, open_shipped


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_an_embedded_model_upscales_a_colour_photo_above_bicubic(data_dir, backend):
    hr = metrics.modcrop(cv2.imread(str(data_dir / "Set5" / "butterfly.png")), 3)
    lr = metrics.imresize(hr, 1 / 3)
    sr = open_shipped("fsrcnn-s", scale=3, backend=backend, threads=1).upscale_bgr(lr)
    assert sr.shape == hr.shape and sr.dtype == np.uint8
    y = lambda bgr: metrics.rgb_to_y(bgr[..., ::-1])  # noqa: E731
    bicubic = cv2.resize(lr, hr.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    assert metrics.psnr(y(sr), y(hr), 3) > metrics.psnr(y(bicubic), y(hr), 3) + 1.0
    assert np.abs(sr.astype(int).mean(axis=(0, 1)) - hr.astype(int).mean(axis=(0, 1))).max() < 3  # colour kept


def test_an_embedded_model_takes_grey_images_and_model_files():
    sr = open_shipped(str(MODELS_DIR / "fsrcnn_x2_fp32.onnx"), scale=2, threads=1)
    out = sr.upscale_bgr(np.full((10, 7), 128, np.uint8))
    assert out.shape == (20, 14, 3) and np.abs(out.astype(int) - 128).max() <= 2


def test_an_embedded_model_refuses_what_it_cannot_open():
    with pytest.raises(BackendError, match="no shipped model for fsrcnn x5"):
        open_shipped("fsrcnn", scale=5)
    with pytest.raises(BackendError, match="auto measures a stream"):
        open_shipped("auto")
    with pytest.raises(BackendError, match="upscales x2, not the x3 asked for"):
        open_shipped(str(MODELS_DIR / "fsrcnn_x2_fp32.onnx"), scale=3)


def test_litert_says_nothing_on_stderr_but_what_else_is_written_there_gets_through():
    code = textwrap.dedent("""
        import os
        import numpy as np
        from edge_runtime.backends import _without_delegate_banner
        from edge_runtime.models import open_shipped
        open_shipped("fsrcnn-s", scale=2, backend="litert", threads=1).upscale_bgr(np.zeros((8, 8, 3), np.uint8))
        with _without_delegate_banner():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\nan error of the runtime\\n")
    """)
    run = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stderr == "an error of the runtime\n"


def test_litert_still_runs_where_no_temp_file_can_be_made(monkeypatch):
    def no_temp_files(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("edge_runtime.backends.tempfile.TemporaryFile", no_temp_files)
    out = open_shipped("fsrcnn-s", scale=2, backend="litert", threads=1).upscale_bgr(np.zeros((8, 8, 3), np.uint8))
    assert out.shape == (16, 16, 3)


@pytest.mark.parametrize("name", ["fsrcnn_x2_int8.tflite", "fsrcnn_x2_fp32.onnx", "fsrcnn_x3_int8.onnx",
                                  "fsrcnn-s_x4_fp32.tflite"])
def test_a_large_frame_goes_through_in_tiles_that_give_the_whole_frames_output_bit_for_bit(name):
    y = metrics.rgb_to_y(textured_image(150, 203, seed=3)[..., ::-1])  # odd sizes: the last tiles are odd too
    upscaler = load_upscaler(MODELS_DIR / name, threads=1)
    whole = upscaler.upscale(y), upscaler.run(y)
    upscaler.tile, upscaler.whole_limit = 40, 0  # 4 x 6 tiles, each cut with the default margin
    assert all(np.array_equal(a, b) for a, b in zip(whole, (upscaler.upscale(y), upscaler.run(y))))
    if name.startswith("fsrcnn_x"):
        upscaler.margin = 4  # under FSRCNN's reach (8 LR pixels): the seams show, so the test can see them
        assert not np.array_equal(whole[0], upscaler.upscale(y))


def test_tiles_cover_each_axis_once_through_windows_of_one_length_at_even_starts():
    upscaler = load_upscaler(MODELS_DIR / "fsrcnn-s_x2_fp32.onnx", threads=1)
    upscaler.tile, upscaler.margin = 40, 16
    for n in range(1, 300):
        windows = upscaler._windows(n)
        cores = [core for core, _ in windows]
        assert cores[0][0] == 0 and cores[-1][1] == n and all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
        for (start, end), (w0, w1) in windows:
            assert w0 % 2 == 0 and (w0 == 0 or w0 <= start - 16) and (w1 == n or w1 >= end + 16)
        lengths = {w1 - w0 for _, (w0, w1) in windows[:-1 if n % 2 else None]}
        assert len(lengths) <= 1  # one shape, so LiteRT allocates once (the last window of an odd axis aside)
