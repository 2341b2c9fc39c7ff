import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import PYTHON, ROOT, textured_image
from edge_runtime.files import sha256
from edge_runtime.metrics import degrade, rgb_to_y
from training.fit_head import fit_head
from training.model import FSRCNN, load_weights, preset, save_weights, upscale_image


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_fit_recovers_the_head_that_made_the_targets(scale):
    torch.manual_seed(scale)
    teacher = FSRCNN(preset("fsrcnn-s", scale)).eval()
    with torch.no_grad():
        teacher.deconv.weight.normal_(0, 0.05)
        teacher.deconv.bias.fill_(0.1)

    def upscale(model, lr):
        with torch.no_grad():
            return model(torch.from_numpy(lr.astype(np.float32) / 255)[None, None])[0, 0].numpy() * 255

    lrs = [degrade(rgb_to_y(textured_image(60, 72, seed)), scale)[1] for seed in range(4)]
    student = FSRCNN(preset("fsrcnn-s", scale)).eval()
    student.body.load_state_dict(teacher.body.state_dict())
    fit_head(student, [(upscale(teacher, lr), lr) for lr in lrs[:3]], keep=1.0)
    # A random body's features are collinear, so many heads fit: the function is what must match, on
    # an image the fit did not see, away from the zero-padded borders (the fit leaves the outer ring out).
    held_out, border = lrs[3], 3 * scale
    error = np.abs(upscale(student, held_out) - upscale(teacher, held_out))[border:-border, border:-border]
    assert error.max() < 0.1  # grey levels


def test_a_padding_free_models_head_is_fitted_on_the_features_it_meets_at_mirrored_borders():
    """The shipped FSRCNN-s x3 is padding-free: its body's features at an image's borders are those of the mirrored
    image. A head fitted on zero-padded features instead misses the teacher's outputs by 5 to 7 grey levels there."""
    torch.manual_seed(0)
    teacher = load_weights(ROOT / "training" / "weights" / "fsrcnn-s_x3.pt").eval()
    assert teacher.config.border
    with torch.no_grad():
        teacher.deconv.weight.add_(torch.randn_like(teacher.deconv.weight) * 0.02)

    def upscale(model, lr):
        with torch.no_grad():
            return upscale_image(model, torch.from_numpy(lr.astype(np.float32) / 255)[None, None])[0, 0].numpy() * 255

    # Four small images to fit on: three left the fit short of pixels for the ov52 body (1.2 grey levels out).
    lrs = [degrade(rgb_to_y(textured_image(60, 72, seed)), 3)[1] for seed in range(5)]
    student = load_weights(ROOT / "training" / "weights" / "fsrcnn-s_x3.pt").eval()
    fit_head(student, [(upscale(teacher, lr), lr) for lr in lrs[:4]], keep=1.0)
    assert np.abs(upscale(student, lrs[4]) - upscale(teacher, lrs[4])).max() < 1  # grey levels, borders included


def test_the_cli_writes_a_refitted_checkpoint_only_when_validation_rises(tiny_dataset, tmp_path):
    path = tmp_path / "fsrcnn-s_x3.pt"
    torch.manual_seed(0)
    save_weights(FSRCNN(preset("fsrcnn-s", 3)), path, {"train_sets": ["T91"]})  # an untrained head
    untrained = sha256(path)
    command = [PYTHON, "-m", "training.fit_head", str(path), "--data-dir", str(tiny_dataset), "--threads", "1"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    meta = json.loads(path.with_suffix(".json").read_text())
    fit = meta["head_fit"]
    assert fit["val_psnr_after"] > fit["val_psnr_before"] and fit["train_sets"] == ["T91"]
    assert fit["from_sha256"] == untrained
    refitted = load_weights(path).deconv.weight.clone()
    second = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)  # already at the optimum
    assert second.returncode == 0 and "kept the checkpoint" in second.stdout
    assert torch.equal(load_weights(path).deconv.weight, refitted)


def test_a_bad_data_folder_is_one_clear_line(tmp_path):
    path = tmp_path / "fsrcnn-s_x2.pt"
    save_weights(FSRCNN(preset("fsrcnn-s", 2)), path)
    run = subprocess.run([PYTHON, "-m", "training.fit_head", str(path), "--data-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "data folder not found" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_negative_thread_count_is_refused_before_any_work(tmp_path):
    run = subprocess.run([PYTHON, "-m", "training.fit_head", str(tmp_path / "any.pt"), "--threads", "-1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--threads must be 0 (torch's default) or more, not -1" in run.stderr
    assert "Traceback" not in run.stderr
