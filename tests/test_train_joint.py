import csv
import json
import subprocess

import pytest
import torch

from conftest import PYTHON, ROOT
from training import train, train_joint
from training.model import FSRCNN, load_weights, preset, save_weights


def test_a_joint_run_trains_one_body_under_three_heads_and_saves_each_scale(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    save_weights(FSRCNN(preset("fsrcnn-s", 3, 3)), tmp_path / "start" / "fsrcnn-s_x3.pt")
    cfg = train_joint.parse_args([
        "--model", "fsrcnn-s", "--init-from", str(tmp_path / "start" / "fsrcnn-s_x3.pt"), "--data-dir", str(tiny_dataset),
        "--iters", "40", "--eval-every", "20", "--batch", "4", "--lr", "2e-3", "--run-dir", str(tmp_path / "runs"),
        "--out-dir", str(tmp_path / "weights"), "--threads", "1"], train_joint.JointConfig)
    best = train_joint.train_joint(cfg)
    for s in (2, 3, 4):  # each scale's log in train.py's columns
        rows = list(csv.DictReader(open(tmp_path / "runs" / f"fsrcnn-s_x{s}" / "log.csv")))
        assert [int(r["step"]) for r in rows] == [20, 40] and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    models = {s: load_weights(tmp_path / "weights" / f"fsrcnn-s_x{s}.pt", expect_scale=s) for s in (2, 3, 4)}
    steps = {s: json.load(open(tmp_path / "weights" / f"fsrcnn-s_x{s}.json"))["step"] for s in (2, 3, 4)}
    assert set(best) == {2, 3, 4} and models[2].config.deconv_pad == 4 and models[3].config.deconv_pad == 3
    assert steps[2] == steps[4] == 40  # fresh heads still improving; saved at the same validation: the same body
    assert all(torch.equal(a, b) for a, b in zip(models[2].body.parameters(), models[4].body.parameters()))
    for s in (2, 3, 4):  # each scale's own best in its run folder too
        own = load_weights(tmp_path / "runs" / f"fsrcnn-s_x{s}" / "best.pt", expect_scale=s)
        assert all(torch.equal(a, b) for a, b in zip(own.parameters(), models[s].parameters()))


def test_heads_come_from_the_heads_folder_and_the_body_from_init_from(tmp_path):
    torch.manual_seed(1)
    body_source, x2_head = FSRCNN(preset("fsrcnn-s", 3, 3)), FSRCNN(preset("fsrcnn-s", 2, 4))
    save_weights(body_source, tmp_path / "fsrcnn-s_x3.pt")
    save_weights(x2_head, tmp_path / "heads" / "fsrcnn-s_x2.pt")
    cfg = train_joint.JointConfig(model="fsrcnn-s", init_from=str(tmp_path / "fsrcnn-s_x3.pt"), heads_from=str(tmp_path / "heads"))
    models = train_joint.build_models(cfg)
    assert models[2].body is models[3].body is models[4].body
    assert torch.equal(models[3].body[0].weight, body_source.body[0].weight)
    assert torch.equal(models[2].deconv.weight, x2_head.deconv.weight)
    assert torch.equal(models[3].deconv.weight, body_source.deconv.weight)
    assert models[4].deconv.weight.std() < 0.01  # no x4 head anywhere: the paper's fresh N(0, 0.001)


def test_a_joint_run_without_a_starting_checkpoint_exits_with_one_clear_line(tiny_dataset):
    run = subprocess.run([PYTHON, "-m", "training.train_joint", "--data-dir", str(tiny_dataset)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "python -m training.train_joint: error: --init-from is required: the checkpoint whose body the three heads share"


@pytest.mark.parametrize("args, line", [
    (["--heads-from", "/nonexistent/heads"], "--heads-from folder not found: /nonexistent/heads"),
    (["--iters", "0"], "--iters must be at least 1, not 0"),
])
def test_a_joint_run_with_a_missing_heads_folder_or_no_steps_exits_with_one_clear_line(tiny_dataset, args, line):
    run = subprocess.run([PYTHON, "-m", "training.train_joint", "--model", "fsrcnn-s", "--data-dir", str(tiny_dataset),
                          "--init-from", str(ROOT / "training" / "weights" / "fsrcnn-s_x3.pt"), *args],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and run.stderr.strip() == f"python -m training.train_joint: error: {line}"


def test_help_explains_every_flag_with_its_default():
    for module in ("training.train", "training.train_joint"):
        run = subprocess.run([PYTHON, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
        text = " ".join(run.stdout.split())  # as wrapped for any terminal width
        assert run.returncode == 0
        assert "--batch BATCH patches per" in text and "(default: 64)" in text
        assert "--threads THREADS torch CPU threads; 0: torch's default" in text


def test_every_flag_defaults_to_its_config_field_and_switches_both_ways():
    assert train.parse_args([]) == train.TrainConfig()
    assert train_joint.parse_args([], train_joint.JointConfig) == train_joint.JointConfig()
    assert train.parse_args(["--transpose"]).transpose and not train.parse_args(["--transpose", "--no-transpose"]).transpose
