"""`--ensemble`: the x8 self-ensemble, on real shipped artifacts and through the real CLI."""
import json
import subprocess

import numpy as np

from conftest import PYTHON, ROOT, textured_image
from edge_runtime.ensemble import SelfEnsemble
from edge_runtime.frames import Frame
from edge_runtime.models import open_shipped


def test_the_ensemble_turns_with_its_input_where_the_model_alone_does_not():
    """The mean over the 8 symmetries is itself symmetric: turning the frame turns the output, exactly but for
    float rounding. The model alone is not, or the ensemble would be the model."""
    y = Frame.from_bgr(textured_image(37, 50, seed=3), 0).y
    model = open_shipped("fsrcnn", scale=3, precision="fp32", backend="onnxruntime", threads=1)
    ensemble = open_shipped("fsrcnn", scale=3, precision="fp32", backend="onnxruntime", threads=1, ensemble=True)
    assert isinstance(ensemble, SelfEnsemble) and ensemble.run(y).shape == (111, 150)
    for k in (1, 2):
        assert np.abs(ensemble.run(np.rot90(y, k).copy()) - np.rot90(ensemble.run(y), k)).max() < 1e-3
        assert np.abs(model.run(np.rot90(y, k).copy()) - np.rot90(model.run(y), k)).max() > 0.5
    assert np.abs(ensemble.run(y.T.copy()) - ensemble.run(y).T).max() < 1e-3
    assert ensemble.upscale(y).dtype == np.uint8


def test_ensemble_flag_streams_set5_at_a_higher_psnr_than_the_model_alone(tmp_path, data_dir):
    """Through the CLI's default form (INT8 LiteRT), as a user runs it on photos: measured +0.2 dB at x3."""
    scores = {}
    for flags in ([], ["--ensemble"]):
        report = tmp_path / f"report{len(flags)}.json"
        run = subprocess.run([PYTHON, "-m", "edge_runtime", "--images", str(data_dir / "Set5"), "--psnr", "--scale",
                              "3", "--model", "fsrcnn-s", "--threads", "1", "--quiet", "--report", str(report), *flags],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert run.returncode == 0, run.stderr
        scores[bool(flags)] = json.loads(report.read_text())
    alone, ensemble = scores[False], scores[True]
    assert alone["model"] == ensemble["model"] == "fsrcnn-s_x3_int8.tflite"
    assert (alone["ensemble"], ensemble["ensemble"]) == (False, True)
    assert ensemble["psnr"]["sr"] > alone["psnr"]["sr"] + 0.1
    per_image = zip(alone["psnr"]["files"].values(), ensemble["psnr"]["files"].values())
    assert all(b["sr"] > a["sr"] for a, b in per_image)
